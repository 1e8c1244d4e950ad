"""How much of the machine a run uses: MFU of a training step, fixed overhead of a run, layout.

- ``mfu``: model FLOP/s of a training step (3x the forward FLOPs counted by
  ``torch.utils.flop_counter``, divided by the measured step time) over the machine's fp32
  matmul peak (a large square matmul timed in the same process, same threads), at 1 thread
  (the layout grid workers run) and at all cores; the peak is timed just before and after
  each model's steps, as the host's speed drifts. bf16 autocast
  is measured beside fp32 where the CPU has native bf16 (AVX-512 BF16 or AMX), else recorded
  as unsupported. Each row also splits the step's op time (``torch.profiler``) into dense
  kernels, norms, elementwise ops, copies and the rest (``op_shares.class_shares``), and gives
  the MFU the step would reach if only its dense kernels took time (``mfu_dense_only``): what
  fusing everything between them could at most bring.
- ``overhead``: one run of a profile (``train_run``; pilot and quick) against the time its
  optimizer steps alone take: what is left (building the model, the data, validation, test,
  cost counting, Lightning's set-up) is the fixed overhead, as a share of the run; the
  interpreter start with the project imported is measured in a fresh process and added.
- ``overhead`` also reads the finished grid runs under ``results/`` (``overhead_in_runs``):
  the same share measured inside every run, per profile and paper.
- ``layout``: the workers x threads layouts of ``experiments.run.layout`` for every micro
  model.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pandas as pd
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import modules  # noqa: F401
from experiments.run.cost import PhaseClock
from experiments.tools.op_shares import class_shares
from experiments.tools.timing import bracketed, clock_name, seconds_per_call, step_seconds
from modules.layers.small_map_conv import plain_convolutions

MICRO_MODELS = ["deit_micro", "localvit_micro", "efficientmod_micro", "scalablevit_micro",
                "casvit_micro"]  # fmt: skip
INPUT = (1, 28, 28)  # the quick profile's Fashion-MNIST


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic on this CPU (AVX-512 BF16 or AMX tiles)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def matmul_peak_flops(n: int = 2048, seconds: float = 2.0, dtype=torch.float32) -> float:
    """FLOP/s of an n x n matmul in this process: the peak a training step is measured against."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    # the same clock as the training steps it is the peak of
    return 2 * n**3 / seconds_per_call(lambda: a @ b, seconds, a)


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one training step: 3x the counted forward FLOPs (backward is about twice the
    forward, the usual MFU convention). The backward is not counted directly because
    ``FlopCounterMode``'s formula for grouped convolutions' backward ignores the groups and
    overcounts depth-wise convs by their channel count (LocalViT's step read 164% MFU)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad(), plain_convolutions():
        model(x)
    return 3 * counter.get_total_flops()


def bench_mfu(
    batch: int = 64,
    seconds: float = 3.0,
    models=MICRO_MODELS,
    threads: tuple[int, ...] | None = None,
) -> pd.DataFrame:
    """MFU of every micro model at each thread count (default: 1, the layout a grid worker
    runs, and all cores); the peak is measured at the same thread count as the step."""
    import os

    cores = os.cpu_count() or 1
    threads = threads or tuple(sorted({1, cores}))
    saved = torch.get_num_threads()
    rows = []
    try:
        for n in threads:
            torch.set_num_threads(n)
            rows += _mfu_rows(batch, seconds, models)
    finally:
        torch.set_num_threads(saved)
    return pd.DataFrame(rows)


def _mfu_rows(batch: int, seconds: float, models) -> list[dict]:
    bf16 = cpu_has_bf16()
    rows = []
    for name in models:
        net = timm.create_model(name, num_classes=10, in_chans=INPUT[0]).train()
        x, y = torch.randn(batch, *INPUT), torch.randint(0, 10, (batch,))
        flops = step_flops(net, x, y)
        t, peak = bracketed(
            partial(step_seconds, net, x, y, seconds), partial(matmul_peak_flops, seconds=1.0)
        )
        row = {
            "model": name,
            "batch": batch,
            "input": "x".join(map(str, INPUT)),
            "threads": torch.get_num_threads(),
            "clock": clock_name(x),
            "step_gflop": flops / 1e9,
            "step_s": t,
            "img_s": batch / t,
            "achieved_gflop_s": flops / t / 1e9,
            "peak_fp32_gflop_s": peak / 1e9,
            "mfu_fp32": flops / t / peak,
            "bf16": "native" if bf16 else "unsupported on this CPU",
        }
        # where the time goes, and the MFU if only the dense kernels took time (the ceiling of
        # fusing everything between them)
        row.update(class_shares(net, x, y))
        row["mfu_dense_only"] = row["mfu_fp32"] / row["dense_share"]
        if bf16:
            t16, peak_bf16 = bracketed(
                partial(step_seconds, net, x, y, seconds, bf16=True),
                partial(matmul_peak_flops, seconds=1.0, dtype=torch.bfloat16),
            )
            row.update(step_s_bf16=t16, speedup_bf16=t / t16, mfu_bf16=flops / t16 / peak_bf16)
        rows.append(row)
        print(
            f"{name} ({row['threads']} threads): {flops / 1e9:.2f} GFLOP/step, "
            f"{batch / t:.0f} img/s, MFU {100 * row['mfu_fp32']:.1f}% of "
            f"{peak / 1e9:.0f} GFLOP/s fp32"
            + f" (dense kernels {100 * row['dense_share']:.0f}% of the step, norms "
            f"{100 * row['norm_share']:.0f}%, elementwise {100 * row['elementwise_share']:.0f}%, "
            f"copies {100 * row['copy_share']:.0f}%, other {100 * row['other_share']:.0f}%; "
            f"dense only: {100 * row['mfu_dense_only']:.0f}%)"
            + (
                f"; bf16 autocast {row['speedup_bf16']:.2f}x fp32's speed"
                if "step_s_bf16" in row
                else ""
            ),
            flush=True,
        )
    return rows


def interpreter_start_s() -> float:
    """A fresh ``python -c 'import experiments.run.train'`` (what each worker pays once)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import experiments.run.train"], check=True)
    return time.perf_counter() - start


def bench_overhead(
    model: str = "localvit_micro", profile: str = "quick", train_overrides: dict | None = None
) -> dict:
    """A run of ``profile`` (from ``ablations/profiles.yaml``): its wall time against the time
    its optimizer steps alone take. ``train_overrides`` change its recipe (``fold_bn: false``
    measures evaluation as the network trains) and are recorded in the row."""
    from experiments.config.toplevel import load_profile_defaults
    from experiments.run.data import DataConfig, data_info, resolve_val_size
    from experiments.run.recipe import TrainConfig
    from experiments.run.train import train_run

    layer = load_profile_defaults(Path("ablations/profiles.yaml"))[profile]
    data, train = dict(layer["data"]), {**layer["train"], **(train_overrides or {})}
    cfg = DataConfig(**data)
    if cfg.subset is not None:  # training images, carved after the validation images
        images = cfg.subset
    else:
        split = data_info(cfg).train_size
        images = split - resolve_val_size(cfg, split)
    per_epoch = math.ceil(images / cfg.batch_size)
    phases = PhaseClock()
    net = timm.create_model(model, num_classes=10, in_chans=1).train()
    x, y = torch.randn(cfg.batch_size, *INPUT), torch.randint(0, 10, (cfg.batch_size,))

    def run() -> tuple[dict, float]:
        start = time.perf_counter()
        out = train_run({"name": model}, data, train, seed=0, progress=False, callbacks=[phases])
        return out, time.perf_counter() - start

    # bare steps timed on both sides of the run: a shared host's speed drifts by tens of
    # percent within a run's minutes, and one side alone puts that drift into the overhead
    (result, run_s), step_s = bracketed(run, partial(step_seconds, net, x, y, seconds=5.0))
    steps = train.get("steps") or train.get("epochs", 3) * per_epoch
    start_s = interpreter_start_s()
    fixed = run_s - steps * step_s
    row = {
        "model": model,
        "profile": profile,
        "fold_bn": TrainConfig(**train).fold_bn,
        "epochs": result["epochs_run"],
        "steps": steps,
        "run_s": run_s,
        "fit_and_test_s": result["wall_s"],
        "bare_steps_s": steps * step_s,
        "interpreter_start_s": start_s,
        "fixed_overhead_s": fixed,
        "overhead_share": fixed / run_s,
        "overhead_share_with_start": (fixed + start_s) / (run_s + start_s),
        # where the run's time went (PhaseClock): the training batches as the loop ran them,
        # the validation passes, the test pass, and the rest (set-up, data, cost counting)
        **{f"{k}_s": v for k, v in phases.seconds.items()},
        "other_s": run_s - sum(phases.seconds.values()),
        "validation_share": phases.seconds["validation"] / run_s,
        "test_share": phases.seconds["test"] / run_s,
        # measured inside the run alone, free of drift: what is not a training batch
        "outside_batches_share": 1 - phases.seconds["train_batches"] / run_s,
    }
    print(
        f"{model} at {profile}: {run_s:.1f} s, of which {steps} bare steps "
        f"{steps * step_s:.1f} s; fixed overhead {fixed:.1f} s = "
        f"{100 * row['overhead_share']:.1f}% of the run (+ interpreter start {start_s:.1f} s "
        f"once per worker); validation {row['validation_s']:.1f} s, test {row['test_s']:.1f} s, "
        f"set-up, data and cost counting {row['other_s']:.1f} s; outside the training "
        f"batches (measured in the run alone) {100 * row['outside_batches_share']:.1f}%",
        flush=True,
    )
    return row


def overhead_in_runs(results: pd.DataFrame) -> pd.DataFrame:
    """Fixed overhead measured inside finished grid runs, per profile and paper (medians).

    A run's training time is its training images over its own loop throughput
    (``train_img_s``, timed between consecutive training batches, so validation, test, set-up
    and cost counting are outside it); the rest of its ``wall_s`` (fit and test) is overhead.
    Measured in the runs themselves, so it holds under whatever load they ran.
    """
    ok = results[(results["status"] == "ok") & results["train_img_s"].notna()].copy()
    ok = ok[ok["data.subset"].notna()]  # the training images an epoch (val is carved apart)
    images = ok["epochs_run"] * ok["data.subset"]
    if "train.steps" in ok:
        budget = ok["train.steps"] * ok["data.batch_size"]
        images = images.where(budget.isna(), images.clip(upper=budget))
    ok["train_s"] = images / ok["train_img_s"]
    ok["overhead_share"] = 1 - ok["train_s"] / ok["wall_s"]
    return (
        ok.groupby(["profile", "paper"])
        .agg(
            runs=("run_id", "size"),
            wall_s=("wall_s", "median"),
            train_s=("train_s", "median"),
            overhead_share=("overhead_share", "median"),
        )
        .reset_index()
    )


def bench_layout(models=MICRO_MODELS, seconds: float = 4.0) -> pd.DataFrame:
    import os

    from experiments.run.layout import measure, pick

    rows = []
    cores = os.cpu_count() or 1
    for name in models:
        layouts = measure({"name": name}, 64, INPUT[1], INPUT[0], 10, cores, cores, seconds)
        best = pick(layouts)
        one = next(x for x in layouts if x.workers == 1)
        for x in layouts:
            rows.append({"model": name, "workers": x.workers, "threads": x.threads,
                         "img_s": x.img_s, "vs_one_worker": x.img_s / one.img_s,
                         "picked": x == best})  # fmt: skip
        figures = ", ".join(f"{x.workers}x{x.threads} {x.img_s:.0f} img/s" for x in layouts)
        print(f"{name}: {figures}; picked {best.workers}x{best.threads}", flush=True)
    return pd.DataFrame(rows)
