"""Official EfficientMod vs ours: same weights, same outputs, training speed and layout copies.

Why: the re-implementation must be the same network (it loads the official weights and gives
the same logits) and should not be slower; the official code spends a large share of a
training step copying tensors between layouts (permute + contiguous, repeat). This script
builds the official ``efficientMod_<variant>`` from a checkout of ma-xu/EfficientMod (kept
out of the repository) and ours at the same config, then measures

1. the largest logit difference after loading the official weights into ours (both
   broadcasts);
2. training throughput (forward, cross-entropy, backward, SGD step) of both, interleaved
   over repeats, as img/s and the ratio ours / official;
3. with ``torch.profiler``, the share of self CPU time spent in layout copies: ops named
   copy_/clone/contiguous/permute/repeat/_to_copy/to and everything they (or the backward
   of repeat and permute) call, wherever they are called from (inside a conv or a reshape
   too), except the bias copy a GEMM makes into its output.

Usage (the checkout holds ``models/EfficientMod.py``; keep it in the git-ignored ``.official/``,
e.g. ``git clone https://github.com/ma-xu/EfficientMod .official/EfficientMod``):

    python -m experiments.tools.compare_official_efficientmod --official-repo .official/EfficientMod \
        --variant xxs --img-size 224 --batch-size 16
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
import timm
import torch
from torch.profiler import ProfilerActivity, profile

import modules  # noqa: F401  (registers our models)
from experiments.run.store import atomic_write_csv, merge_setting_rows, provenance, results_root
from experiments.tools.official_source import (
    add_timing_arguments,
    apply_timing_arguments,
    import_official_file,
)
from experiments.tools.timing import clock_name, interleaved, train_step
from modules.efficientmod import load_official_efficientmod

OFFICIAL_NAMES = {
    "xxs": "efficientMod_xxs",
    "xs": "efficientMod_xs",
    "s": "efficientMod_s",
    "s_conv": "efficientMod_s_Conv",
}
COPY_OPS = {
    "aten::copy_",
    "aten::clone",
    "aten::contiguous",
    "aten::permute",
    "aten::repeat",
    "aten::_to_copy",
    "aten::to",
    "RepeatBackward0",
    "PermuteBackward0",
}
# A GEMM with bias first copies the bias into its output: arithmetic, not a layout copy.
NOT_LAYOUT_PARENTS = {"aten::addmm", "aten::baddbmm", "aten::addmv"}


def import_official(repo: Path):
    """The official ``models/EfficientMod.py`` of a checkout at ``repo``."""
    return import_official_file(repo / "models" / "EfficientMod.py", "official_efficientmod")


def sgd(model) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)


def copy_share(model, opt, x, y, steps: int = 2) -> tuple[float, float, dict]:
    """(share of self CPU time in layout copies, profiled ms per step, copy ms by op)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(model, opt, x, y)
    total, by_op = 0.0, {}

    def walk(event, copy_op: str | None) -> None:
        nonlocal total
        if copy_op is None and event.name in COPY_OPS:
            parent = event.cpu_parent
            if parent is None or parent.name not in NOT_LAYOUT_PARENTS:
                copy_op = event.name
        total += event.self_cpu_time_total
        if copy_op:  # attributed to the outermost copy op (its callees included)
            by_op[copy_op] = by_op.get(copy_op, 0.0) + event.self_cpu_time_total / 1000 / steps
        for child in event.cpu_children:
            walk(child, copy_op)

    for event in prof.events():
        if event.cpu_parent is None:
            walk(event, None)
    ms = total / 1000 / steps
    return sum(by_op.values()) / ms, ms, by_op


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", type=Path, required=True)
    parser.add_argument("--variant", choices=sorted(OFFICIAL_NAMES), default="xxs")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--broadcast", choices=("reshape", "repeat"), default="reshape")
    add_timing_arguments(parser, steps=3)
    args = parser.parse_args(argv)
    apply_timing_arguments(args)
    official_module = import_official(args.official_repo)
    official = getattr(official_module, OFFICIAL_NAMES[args.variant])()
    ours = timm.create_model(f"efficientmod_{args.variant}", broadcast=args.broadcast)
    n_off = sum(p.numel() for p in official.parameters())
    n_ours = sum(p.numel() for p in ours.parameters())
    print(f"threads {torch.get_num_threads()}  torch {torch.__version__}  timm {timm.__version__}")
    print(f"params: official {n_off / 1e6:.4f}M  ours {n_ours / 1e6:.4f}M")

    # 1. same weights -> same logits (the loader is the check of the key mapping)
    load_official_efficientmod(ours, official.state_dict())
    x = torch.randn(4, 3, args.img_size, args.img_size)
    official.eval(), ours.eval()
    with torch.no_grad():
        ref = official(x)
        diffs = {}
        for mode in ("repeat", "reshape"):
            for m in ours.modules():
                if hasattr(m, "broadcast"):
                    m.broadcast = mode
            diffs[mode] = (ours(x) - ref).abs().max().item()
    for m in ours.modules():
        if hasattr(m, "broadcast"):
            m.broadcast = args.broadcast
    print(
        "max |logit diff| after loading official weights: "
        + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
    )

    # 2. interleaved training throughput
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    y = torch.randint(0, 1000, (args.batch_size,))
    models = {"official": official, "ours": ours}
    speed = interleaved(
        models, x, y, args.repeats, args.steps, warmup_steps=2, optimizer=sgd
    )  # warm-up: allocator, oneDNN primitives
    ratios = [o / f for o, f in zip(speed["ours"], speed["official"], strict=True)]
    for k, v in speed.items():
        print(
            f"train img/s {k:8s}: median {statistics.median(v):7.1f}  best {max(v):7.1f}  runs "
            + " ".join(f"{s:.1f}" for s in v)
        )
    # On a shared machine other jobs only slow a repeat down: the best repeats are the cleanest.
    print(
        f"ratio ours/official: median of paired repeats {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}); "
        f"best/best {max(speed['ours']) / max(speed['official']):.3f}"
    )

    table = pd.DataFrame(
        {
            "variant": f"efficientmod_{args.variant}",
            "input": f"3x{args.img_size}",
            "batch": args.batch_size,
            "broadcast": args.broadcast,
            "repeat": range(args.repeats),
            "ours_img_s": speed["ours"],
            "official_img_s": speed["official"],
            "ratio": ratios,
            "logit_diff": diffs[args.broadcast],
            "clock": clock_name(x),
        }
    ).assign(**provenance())  # with the thread count
    path = results_root() / "bench" / "official_efficientmod.csv"
    setting = ["variant", "input", "batch", "broadcast", "threads"]
    atomic_write_csv(merge_setting_rows(path, table, setting), path)

    # 3. share of the step in layout copies (profiler overhead inflates small ops alike)
    for k, m in models.items():
        share, ms, by_op = copy_share(m, sgd(m), x, y)
        top = sorted(by_op.items(), key=lambda kv: -kv[1])[:4]
        print(
            f"profiler copy share {k:8s}: {100 * share:5.1f}% of {ms:.0f} ms self CPU per step ("
            + ", ".join(f"{name} {t:.0f} ms" for name, t in top)
            + ")"
        )


if __name__ == "__main__":
    main()
