"""Official CAS-ViT (rcvit_*) vs ours: same weights, same logits; training-step speed.

Why: the re-implementation must compute the released function (layout changes only) and
its training step should not cost more than the released one. The script

1. builds each released variant (``rcvit_xs/s/m/t``, with its distillation head, as the
   released factories do), randomises its weights and BN statistics, copies them into
   ``casvit_*`` through ``checkpoint_filter_fn`` and prints the largest eval-mode logit
   difference at 224 px (the distillation head is averaged into the class head);
2. does the same for the micro size: the released ``RCViT`` with ``casvit_micro``'s widths
   and depths, its stem's second conv and its last downsampling set to stride 1 and a
   1-channel first conv, i.e. exactly ``casvit_micro`` at 28x28x1;
3. times a training step (forward, cross-entropy, backward, AdamW) of ours and the official
   model interleaved over repeats, at 224 px (``rcvit_xs``, distillation off as the training
   script builds it) and at the micro size, and prints the throughput ratio ours/official
   (median over repeats); writes one row per repeat and size to
   ``results/bench/official_casvit.csv``.

The released file imports ``einops`` without using it; a stand-in module is registered when
einops is not installed.

Usage (keep the checkout in the git-ignored ``.official/``, e.g.
``git clone https://github.com/Tianfang-Zhang/CAS-ViT .official/CAS-ViT``)::

    python -m experiments.tools.compare_official_casvit --official-repo .official/CAS-ViT
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import types
from pathlib import Path

import pandas as pd
import timm
import torch
from torch import nn

import modules  # noqa: F401  (registers our models)
from experiments.run.store import atomic_write_csv, merge_setting_rows, provenance, results_root
from experiments.tools.official_source import (
    add_timing_arguments,
    apply_timing_arguments,
    import_official_file,
)
from experiments.tools.timing import clock_name, interleaved
from modules.casvit import checkpoint_filter_fn

VARIANTS = ("xs", "s", "m", "t")


def import_official(repo: Path):
    """The released ``classification/model/rcvit.py`` of a checkout at ``repo``."""
    if importlib.util.find_spec("einops") is None:  # imported there, never used
        stand_in = types.ModuleType("einops")
        stand_in.rearrange = stand_in.repeat = None
        sys.modules.setdefault("einops", stand_in)
    return import_official_file(repo / "classification" / "model" / "rcvit.py", "official_rcvit")


def official_micro(official, ours: nn.Module, distillation: bool) -> nn.Module:
    """The released RCViT rebuilt as ``casvit_micro`` (strides and input channels patched)."""
    cfg = ours.cfg
    model = official.RCViT(
        list(cfg.depths), list(cfg.dims), num_classes=cfg.num_classes, distillation=distillation
    )
    first = model.patch_embed[0]
    model.patch_embed[0] = nn.Conv2d(cfg.in_chans, first.out_channels, 3, 2, 1)
    model.patch_embed[3].stride = (cfg.stem_stride // 2,) * 2
    for i, stride in enumerate(cfg.strides):
        model.network[2 * i + 1].proj.stride = (stride, stride)
    return model


@torch.no_grad()
def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Perturb every parameter and give the BNs non-trivial running statistics."""
    torch.manual_seed(seed)
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.02)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn_like(buf) * 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand_like(buf) + 0.5)
    return model


@torch.no_grad()
def logit_diff(ours: nn.Module, official: nn.Module, x: torch.Tensor) -> float:
    ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
    ours.eval(), official.eval()
    return (ours(x) - official(x)).abs().max().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", type=Path, required=True)
    parser.add_argument("--batch-224", type=int, default=16)
    parser.add_argument("--batch-micro", type=int, default=64)
    add_timing_arguments(parser, steps=3)
    args = parser.parse_args(argv)
    apply_timing_arguments(args)
    official = import_official(args.official_repo)
    print(f"threads {torch.get_num_threads()}  torch {torch.__version__}  timm {timm.__version__}")

    # 1. same weights -> same logits, all four released variants and the micro variant
    diffs = {}
    x = torch.randn(4, 3, 224, 224)
    for v in VARIANTS:
        ref = randomise(getattr(official, f"rcvit_{v}")(), args.seed)  # with distillation head
        diffs[f"casvit_{v}"] = logit_diff(timm.create_model(f"casvit_{v}"), ref, x)
    ours = timm.create_model("casvit_micro")
    ref = randomise(official_micro(official, ours, distillation=True), args.seed)
    diffs["casvit_micro"] = logit_diff(ours, ref, torch.randn(8, 1, 28, 28))
    for name, d in diffs.items():
        print(f"max |logit diff| {name:13s} (eval, official weights): {d:.2e}")

    # 2. interleaved training throughput
    rows = []
    sizes = {
        "224": ("casvit_xs", args.batch_224, (3, 224, 224), 1000),
        "micro": ("casvit_micro", args.batch_micro, (1, 28, 28), 10),
    }
    for size, (name, batch, shape, classes) in sizes.items():
        torch.manual_seed(args.seed)
        ours = timm.create_model(name)
        if size == "224":
            ref = official.rcvit_xs(distillation=False)
        else:
            ref = official_micro(official, ours, distillation=False)
        x, y = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))
        speed = interleaved({"ours": ours, "official": ref}, x, y, args.repeats, args.steps)
        ratios = [a / b for a, b in zip(speed["ours"], speed["official"], strict=True)]
        print(
            f"{size:5s} {name}: train img/s ours {statistics.median(speed['ours']):.1f}, "
            f"official {statistics.median(speed['official']):.1f}; "
            f"ratio ours/official median {statistics.median(ratios):.3f} "
            f"(runs {' '.join(f'{r:.2f}' for r in ratios)})"
        )
        for r in range(args.repeats):
            rows.append(
                dict(
                    size=size,
                    model=name,
                    input="x".join(map(str, shape)),
                    batch=batch,
                    repeat=r,
                    ours_img_s=speed["ours"][r],
                    official_img_s=speed["official"][r],
                    ratio=ratios[r],
                    logit_diff=diffs[name],
                    max_logit_diff_all=max(diffs.values()),
                    clock=clock_name(x),
                )
            )
    table = pd.DataFrame(rows).assign(**provenance())  # provenance() records the threads
    path = results_root() / "bench" / "official_casvit.csv"
    atomic_write_csv(merge_setting_rows(path, table, ["size", "input", "batch", "threads"]), path)


if __name__ == "__main__":
    main()
