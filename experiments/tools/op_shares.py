"""Where a training step's time goes, by kind of kernel: the ceiling of a speed-up.

Two implementations of the same network run the same matmuls and convolutions (same shapes,
same FLOPs, the same oneDNN/BLAS kernels); what one can save over the other is the rest:
elementwise ops, norms, softmax, copies, framework overhead. ``kernel_shares`` profiles
training steps and splits their time into those two classes. If our step spends ``dense_s``
in dense kernels, no rewrite that keeps the network's arithmetic makes it faster than
``official_total / ours_dense``: that ceiling says whether a speed target is reachable at all.

Times come from ``torch.profiler`` (wall time of each op on the calling thread), so on a
loaded machine the shares are noisier than the thread-clock ratios of ``timing``.
"""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from experiments.tools.timing import adamw, train_step

# matmuls, convolutions and fused attention (its matmuls are inside the kernel)
DENSE_OPS = frozenset(
    {
        "aten::mm",
        "aten::addmm",
        "aten::bmm",
        "aten::baddbmm",
        "aten::mkldnn_convolution",
        "aten::convolution_backward",
        "aten::_slow_conv2d_forward",
        "aten::_slow_conv2d_backward",
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    }
)


def kernel_shares(model: torch.nn.Module, x, y, steps: int = 3) -> dict:
    """Seconds per training step in dense kernels and in everything else (one warm-up step)."""
    model.train()
    opt = adamw(model)
    train_step(model, opt, x, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(model, opt, x, y)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6 / steps
    dense = sum(e.self_cpu_time_total for e in events if e.key in DENSE_OPS) / 1e6 / steps
    return {
        "step_s": total,
        "dense_s": dense,
        "other_s": total - dense,
        "dense_share": dense / total,
    }


def ceiling_rows(setting: dict, ours, official, x, y, steps: int = 3) -> list[dict]:
    """One row per implementation, each with the ceiling of ours / official for ``setting``
    (the columns naming the comparison: variant, input, batch, ...)."""
    shares = {
        "ours": kernel_shares(ours, x, y, steps),
        "official": kernel_shares(official, x, y, steps),
    }
    ceiling = shares["official"]["step_s"] / shares["ours"]["dense_s"]
    print(
        f"{setting}: dense kernels {100 * shares['ours']['dense_share']:.0f}% of our step, "
        f"{100 * shares['official']['dense_share']:.0f}% of the official one; "
        f"ours / official can reach at most {ceiling:.2f}x",
        flush=True,
    )
    rows = []
    for impl, share in shares.items():
        rows.append({**setting, "impl": impl, "threads": torch.get_num_threads(), **share,
                     "ceiling_ours_over_official": ceiling})  # fmt: skip
    return rows
