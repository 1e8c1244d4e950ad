"""Official LocalViT blocks vs ours: same weights, same outputs, and training speed vs DeiT.

Why: the re-implementation must compute the same function as the official block and its
training step should cost less over DeiT than the official one does. The official model class
(ofsoundof/LocalViT, ``models/localvit.py``) subclasses timm 0.3.2's ``VisionTransformer`` with
positional arguments that timm 1.x no longer accepts, but its ``Block`` (attention + locality
FFN) builds as it is. So the "official" network here is our stem and head (patch embedding,
class token, position embedding, final norm, classifier) around a stack of official
``Block``\\ s; everything that differs between the two implementations is inside the blocks.

The script

1. copies the official blocks' weights into ``localvit_tiny`` through
   ``load_official_localvit`` (the checkpoint converter) and prints the largest logit
   difference in eval mode;
2. times a training step (forward, cross-entropy, backward, AdamW) of ours, the official
   stack and ``deit_tiny_ablate`` interleaved over repeats, and prints the ratios
   ours/DeiT, official/DeiT and ours/official, medians over repeats, and writes the repeats
   to ``results/bench/official_localvit.csv``.

Usage (keep the checkout in the git-ignored ``.official/``, e.g.
``git clone https://github.com/ofsoundof/LocalViT .official/LocalViT``)::

    python -m experiments.tools.compare_official_localvit --official-repo .official/LocalViT
"""

from __future__ import annotations

import argparse
import statistics
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
from modules.localvit_checkpoint import load_official_localvit


def import_official(repo: Path):
    """The official ``models/localvit.py`` of a checkout at ``repo``."""
    return import_official_file(repo / "models" / "localvit.py", "official_localvit")


class OfficialBlocks(nn.Module):
    """Our stem and head around official ``Block``\\ s (the part that differs)."""

    def __init__(self, ours: nn.Module, blocks: list[nn.Module]):
        super().__init__()
        self.ours = ours  # stem and head only; its own blocks are not called
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.ours.embed(x)  # the official block infers the square map itself
        for block in self.blocks:
            x = block(x)
        return self.ours.forward_head(self.ours.norm(x))


def official_state_dict(stem: nn.Module, blocks: list[nn.Module]) -> dict[str, torch.Tensor]:
    """A checkpoint in the official layout: our stem/head tensors plus ``blocks.{i}.*``."""
    state = {k: v for k, v in stem.state_dict().items() if not k.startswith("blocks.")}
    for i, block in enumerate(blocks):
        state.update({f"blocks.{i}.{k}": v for k, v in block.state_dict().items()})
    return state


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", type=Path, required=True)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    add_timing_arguments(parser, steps=5)
    args = parser.parse_args(argv)
    apply_timing_arguments(args)
    size = {"img_size": args.img_size, "patch_size": args.patch_size, "num_classes": 10}
    official_module = import_official(args.official_repo)

    ours = timm.create_model("localvit_tiny", **size)
    dim, heads = ours.embed_dim, ours.blocks[0].attn.num_heads
    reduction = ours.blocks[0].ffn.cfg.se_reduction
    blocks = [
        official_module.Block(
            dim, heads, mlp_ratio=4.0, qkv_bias=True, act="hs+se", reduction=reduction,
            norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6),
        )
        for _ in ours.blocks
    ]  # fmt: skip
    official = OfficialBlocks(timm.create_model("localvit_tiny", **size), blocks)
    load_official_localvit(ours, official_state_dict(official.ours, blocks))
    deit = timm.create_model("deit_tiny_ablate", **size)
    print(f"threads {torch.get_num_threads()}  torch {torch.__version__}  timm {timm.__version__}")

    # 1. same weights -> same logits
    x = torch.randn(8, 3, args.img_size, args.img_size)
    official.eval(), ours.eval()
    with torch.no_grad():
        diff = (ours(x) - official(x)).abs().max().item()
    print(f"max |logit diff| after loading the official blocks' weights: {diff:.2e}")

    # 2. interleaved training throughput, after one untimed round
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    y = torch.randint(0, 10, (args.batch_size,))
    models = {"ours": ours, "official": official, "deit": deit}
    speed = interleaved(models, x, y, args.repeats, args.steps)
    for k, v in speed.items():
        print(f"train img/s {k:8s}: median {statistics.median(v):7.1f}  runs " + " ".join(
            f"{s:.1f}" for s in v))  # fmt: skip
    for a, b in (("ours", "deit"), ("official", "deit"), ("ours", "official")):
        ratios = [p / q for p, q in zip(speed[a], speed[b], strict=True)]
        print(f"ratio {a}/{b}: median {statistics.median(ratios):.3f} over {len(ratios)} repeats")
    table = pd.DataFrame({f"{k}_img_s": v for k, v in speed.items()}).assign(
        repeat=range(args.repeats),
        logit_diff=diff,
        input=f"3x{args.img_size}",
        patch=args.patch_size,
        batch=args.batch_size,
        clock=clock_name(x),
        **provenance(),  # with the thread count
    )
    path = results_root() / "bench" / "official_localvit.csv"
    table = merge_setting_rows(path, table, ["input", "patch", "batch", "threads"])
    atomic_write_csv(table, path)


if __name__ == "__main__":
    main()
