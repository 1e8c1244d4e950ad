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


# the memory-bound rest, by what it is (every other op is "other": the autograd engine's and
# the optimizer wrapper's own time, views, small ops)
NORM_OPS = frozenset(
    {
        "aten::native_batch_norm",
        "aten::native_batch_norm_backward",
        "aten::native_layer_norm",
        "aten::native_layer_norm_backward",
        "aten::native_group_norm",
        "aten::native_group_norm_backward",
    }
)
COPY_OPS = frozenset(
    {
        "aten::copy_",
        "aten::clone",
        "aten::contiguous",
        "aten::cat",
        "aten::stack",
        "aten::constant_pad_nd",
        "aten::slice_backward",
        "aten::select_backward",
        "aten::fill_",
        "aten::zero_",
        "aten::empty",
        "aten::empty_strided",
    }
)
ELEMENTWISE_OPS = frozenset(
    {
        "aten::add", "aten::add_", "aten::sub", "aten::mul", "aten::mul_", "aten::div",
        "aten::sum", "aten::mean", "aten::gelu", "aten::gelu_backward", "aten::hardswish",
        "aten::hardswish_backward", "aten::relu", "aten::relu_", "aten::clamp_min_",
        "aten::threshold_backward", "aten::sigmoid", "aten::sigmoid_backward", "aten::silu",
        "aten::silu_backward", "aten::hardtanh", "aten::hardtanh_backward", "aten::hardsigmoid",
        "aten::hardsigmoid_backward", "aten::_softmax", "aten::_softmax_backward_data",
        "aten::_safe_softmax", "aten::_log_softmax", "aten::_log_softmax_backward_data",
        "aten::nll_loss_forward", "aten::nll_loss_backward", "aten::_fused_adamw_",
    }
)  # fmt: skip
CLASSES = {"dense": DENSE_OPS, "norm": NORM_OPS, "elementwise": ELEMENTWISE_OPS,
           "copy": COPY_OPS}  # fmt: skip


def op_class(name: str) -> str:
    """The class of a profiler event: dense, norm, elementwise, copy or other."""
    return next((c for c, ops in CLASSES.items() if name in ops), "other")


def profiled_steps(model: torch.nn.Module, x, y, steps: int = 3):
    """``torch.profiler``'s per-op averages over ``steps`` training steps (one warm-up step)."""
    model.train()
    opt = adamw(model)
    train_step(model, opt, x, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(model, opt, x, y)
    return prof.key_averages()


def class_shares(model: torch.nn.Module, x, y, steps: int = 3) -> dict:
    """Share of a training step's op time in each class of ``CLASSES`` (and "other"), as
    ``<class>_share``. Where a step is slow against the matmul peak, this says whether the
    dense kernels or the memory-bound passes between them take the time."""
    seconds = dict.fromkeys([*CLASSES, "other"], 0.0)
    for e in profiled_steps(model, x, y, steps):
        seconds[op_class(e.key)] += e.self_cpu_time_total
    total = sum(seconds.values())
    return {f"{c}_share": s / total for c, s in seconds.items()}


def kernel_shares(model: torch.nn.Module, x, y, steps: int = 3) -> dict:
    """Seconds per training step in dense kernels and in everything else (one warm-up step)."""
    events = profiled_steps(model, x, y, steps)
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
