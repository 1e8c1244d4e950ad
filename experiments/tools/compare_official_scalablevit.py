"""Official ScalableViT vs ours: same weights, same logits, and training-step speed.

Why: the re-implementation must be the same network as the released code (it loads the
official weights through ``checkpoint_filter_fn`` and gives the same logits) and should train
faster (fused projections, ``F.scaled_dot_product_attention``, channels-last maps without
layout copies). The script imports ``image_classification/models/scalablevit.py`` from a
checkout of Yangr116/ScalableViT (kept out of the repository) and

1. for S, B and L at 224 px: builds the released model, copies its (randomly initialised)
   weights into ours and prints the parameter counts and the largest |logit difference| in
   eval mode;
2. at the micro size (32x32x3, 10 classes), where the released model cannot run (its window
   of 7 and reductions of 8 do not fit the maps), builds ``scalablevit_micro``'s geometry out of
   the released building blocks (``ConvPatchEmbed``, ``ScalableViTBlock`` with IWSA/SSA,
   ``PosCNN``, the MLP head, the released forward loop); only the stride-1 embedding of the
   last stage is a stand-in (the released ``ConvPatchEmbed`` cannot keep a map's size). The
   micro maps 16, 8, 4, 4 divide by the windows 8, 4, 2, 2 and the reductions 4, 2, 2, 1, so
   no padding is involved. Same logit check;
3. times a training step (forward, cross-entropy, backward, AdamW) of ours and the official
   network interleaved over repeats, at 224 px (S by default) and at the micro size, and
   prints the ratio ours/official (> 1: ours is faster);
4. with ``--op-shares``, splits both training steps into dense kernels (matmuls, convolutions,
   fused attention) and the rest (``experiments.tools.op_shares``), which gives the ceiling of
   ours / official for an implementation that keeps the network's arithmetic.

Rows go to ``results/bench/official_scalablevit.csv`` (and ``official_scalablevit_ops.csv``).

Usage (the checkout in the git-ignored ``.official/``)::

    python -m experiments.tools.compare_official_scalablevit --official-repo .official/ScalableViT
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
from functools import partial
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
from experiments.tools.op_shares import ceiling_rows
from experiments.tools.timing import interleaved
from modules.scalablevit import MICRO
from modules.scalablevit_checkpoint import checkpoint_filter_fn

OFFICIAL_NAMES = {"s": "scalable_vit_small", "b": "scalable_vit_base", "l": "scalable_vit_large"}


def import_official(repo: Path):
    """The official ``image_classification/models/scalablevit.py`` of a checkout at ``repo``."""
    path = repo / "image_classification" / "models" / "scalablevit.py"
    return import_official_file(path, "official_scalablevit")


def quiet(fn, *args, **kwargs):
    """The released constructors print one line per layer."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


class StridelessEmbed(nn.Module):
    """Stand-in for a stride-1 stage embedding in the released layout (``proj``, ``norm``)."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, 3, 1, 1)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        h, w = x.shape[2:]
        return self.norm(self.proj(x).flatten(2).transpose(1, 2)), (h, w)


class OfficialMicro(nn.Module):
    """``scalablevit_micro``'s geometry from the released blocks, in the released layout."""

    def __init__(self, off, img_size: int, in_chans: int, num_classes: int):
        super().__init__()
        cfg = MICRO
        dims, depths, heads = cfg["embed_dims"], cfg["depths"], cfg["num_heads"]
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.depths = depths
        self.patch_embeds, self.pos_block, self.pos_drops = (nn.ModuleList() for _ in range(3))
        self.stages = nn.ModuleList()
        size, prev = img_size, in_chans
        for k, dim in enumerate(dims):
            stride = cfg["patch_size"] if k == 0 else cfg["strides"][k - 1]
            if stride == 1:
                self.patch_embeds.append(StridelessEmbed(prev, dim))
            else:
                self.patch_embeds.append(
                    quiet(off.ConvPatchEmbed, size, stride, prev, dim, 1, norm)
                )
            size //= stride
            self.pos_block.append(off.PosCNN(dim, dim))
            self.pos_drops.append(nn.Dropout(0.0))
            blocks = [
                quiet(
                    off.ScalableViTBlock,
                    dim=dim,
                    num_heads=heads[k],
                    mlp_ratio=4.0,
                    qkv_bias=True,
                    norm_layer=norm,
                    sr_ratio=cfg["rn"][k],
                    ws=1 if i % 2 else cfg["window"][k],
                    c_ratio=cfg["rc"][k],
                )
                for i in range(depths[k])
            ]
            self.stages.append(nn.ModuleList(blocks))
            prev = dim
        self.norm = norm(dims[-1])
        width = cfg["head_width"]
        self.head = nn.Sequential(
            nn.Linear(dims[-1], width), norm(width), nn.GELU(), nn.Linear(width, num_classes)
        )

    def forward(self, x):  # the released forward_features + head
        b = x.shape[0]
        for i in range(len(self.depths)):
            x, (h, w) = self.patch_embeds[i](x)
            x = self.pos_drops[i](x)
            for j, blk in enumerate(self.stages[i]):
                x = blk(x, h, w)
                if j == 0:
                    x = self.pos_block[i](x, h, w)
            if i < len(self.depths) - 1:
                x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
        return self.head(self.norm(x).mean(dim=1))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def logit_diff(ours: nn.Module, official: nn.Module, x: torch.Tensor) -> float:
    ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
    ours.eval(), official.eval()
    with torch.no_grad():
        return (ours(x) - official(x)).abs().max().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=["s", "b", "l"], choices=OFFICIAL_NAMES)
    parser.add_argument("--time-variants", nargs="*", default=["s"], choices=OFFICIAL_NAMES)
    parser.add_argument("--batch-224", type=int, default=4)
    parser.add_argument("--micro-size", type=int, default=32)
    parser.add_argument("--batch-micro", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--op-shares", action="store_true", help="profile both steps: the speed-up's ceiling"
    )
    add_timing_arguments(parser, steps=2)
    args = parser.parse_args(argv)
    apply_timing_arguments(args)
    dev = torch.device(args.device)
    off = import_official(args.official_repo)
    print(f"threads {torch.get_num_threads()}  torch {torch.__version__}  timm {timm.__version__}")
    rows, op_rows = [], []

    def record(variant, size, ours, official, diff, speed=None, batch=0):
        base = dict(
            variant=variant,
            input=f"3x{size}",
            params_ours=n_params(ours),
            params_official=n_params(official),
            logit_diff=diff,
            batch=batch,
            threads=torch.get_num_threads(),
            device=str(dev),
        )
        print(
            f"{variant} {size}px: params ours {base['params_ours'] / 1e6:.3f}M official "
            f"{base['params_official'] / 1e6:.3f}M; max |logit diff| {diff:.2e}"
        )
        if not speed:
            rows.append({**base, "repeat": -1})
            return
        ratios = [o / f for o, f in zip(speed["ours"], speed["official"], strict=True)]
        print(
            f"  train img/s ours {statistics.median(speed['ours']):.2f}, official "
            f"{statistics.median(speed['official']):.2f}; ratio ours/official median "
            f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})"
        )
        for r, (o, f) in enumerate(zip(speed["ours"], speed["official"], strict=True)):
            rows.append({**base, "repeat": r, "ours_img_s": o, "official_img_s": f})

    # 1 + 3: released variants at 224 px
    for v in args.variants:
        official = quiet(getattr(off, OFFICIAL_NAMES[v])).to(dev)
        ours = timm.create_model(f"scalablevit_{v}").to(dev)
        diff = logit_diff(ours, official, torch.randn(2, 3, 224, 224, device=dev))
        speed = None
        if v in args.time_variants:
            x = torch.randn(args.batch_224, 3, 224, 224, device=dev)
            y = torch.randint(0, 1000, (args.batch_224,), device=dev)
            speed = interleaved(
                {"ours": ours, "official": official}, x, y, args.repeats, args.steps
            )
            if args.op_shares:
                setting = {"variant": f"scalablevit_{v}", "input": "3x224", "batch": len(x)}
                op_rows += ceiling_rows(setting, ours, official, x, y)
        record(f"scalablevit_{v}", 224, ours, official, diff, speed, args.batch_224)
        del official, ours

    # 2 + 3: micro geometry from the released blocks
    size = args.micro_size
    official = OfficialMicro(off, size, 3, 10).to(dev)
    ours = timm.create_model("scalablevit_micro", in_chans=3, num_classes=10).to(dev)
    diff = logit_diff(ours, official, torch.randn(8, 3, size, size, device=dev))
    x = torch.randn(args.batch_micro, 3, size, size, device=dev)
    y = torch.randint(0, 10, (args.batch_micro,), device=dev)
    speed = interleaved({"ours": ours, "official": official}, x, y, args.repeats, args.steps * 5)
    record("scalablevit_micro", size, ours, official, diff, speed, args.batch_micro)
    if args.op_shares:
        setting = {"variant": "scalablevit_micro", "input": f"3x{size}", "batch": len(x)}
        op_rows += ceiling_rows(setting, ours, official, x, y, steps=10)
        ops = pd.DataFrame(op_rows).assign(**provenance())
        atomic_write_csv(ops, results_root() / "bench" / "official_scalablevit_ops.csv")

    table = pd.DataFrame(rows).assign(**provenance())
    path = results_root() / "bench" / "official_scalablevit.csv"
    atomic_write_csv(
        merge_setting_rows(path, table, ["variant", "input", "batch", "threads"]), path
    )


if __name__ == "__main__":
    main()
