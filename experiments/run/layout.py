"""How many worker processes, with how many CPU threads each, finish a grid soonest.

Why: a micro model at batch 64 keeps one core busy well but two cores poorly (its kernels are
too small to split), so several single-thread workers often train more runs per hour than
one worker with every thread; a larger model can be the other way round. The only honest
answer is to measure on the machine at hand: for each layout (w workers x t threads, w x t =
the cores) start w probe processes at once, each training the grid's baseline model for a
few steps at t threads on batches of the grid's size, and add their images per second. The
layout with the most images per second wins; fewer workers win ties within 5% (less memory,
and runs finish in order). ``--workers N`` skips the measurement. On a machine with a GPU the
probes train on it, in the precision the runs would use, since the workers share it: a micro
model leaves an H200 mostly idle, and 8 workers ran ``localvit/layers`` (18 quick runs) in
119 s there (``results/bench/gpu.csv``).

    python -m experiments.run.layout '{"name": "localvit_micro"}' --batch 64 --size 28 --chans 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass

TIE = 0.05  # a layout must be this much faster to beat one with fewer workers


@dataclass(frozen=True)
class Layout:
    workers: int
    threads: int
    img_s: float  # summed over the workers


def candidates(cores: int, runs: int) -> list[tuple[int, int]]:
    """(workers, threads) with workers x threads = cores (powers of two), at most one worker
    per pending run."""
    out, w = [], 1
    while w <= cores:
        if w <= max(1, runs):
            out.append((w, max(1, cores // w)))
        w *= 2
    return out


def pick(layouts: list[Layout]) -> Layout:
    """The fastest layout; among those within ``TIE`` of it, the one with fewest workers."""
    best = max(layouts, key=lambda x: x.img_s)
    close = [x for x in layouts if x.img_s >= (1 - TIE) * best.img_s]
    return min(close, key=lambda x: x.workers)


def probe_img_s(
    model: dict, batch: int, size: int, chans: int, classes: int, seconds: float,
    precision: str = "auto",
) -> float:  # fmt: skip
    """Training images per second of ``model`` in this process (after two warm-up steps), on
    the device and in the precision a run would train in here: on a machine with a GPU the
    workers share it, and it is the GPU's throughput under that sharing that decides."""
    import torch

    from experiments.run.models import create_model
    from experiments.run.precision import on_gpu, resolve_precision
    from experiments.tools.timing import step_seconds

    kwargs = dict(model)
    name = kwargs.pop("name")
    device = torch.device("cuda" if on_gpu() else "cpu")
    net = create_model(name, classes, chans, size, **kwargs).to(device).train()
    x = torch.randn(batch, chans, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    bf16 = resolve_precision(precision) == "bf16-mixed"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
        return batch / step_seconds(net, x, y, seconds, bf16=bf16 and device.type == "cpu")


def measure(
    model: dict, batch: int, size: int, chans: int, classes: int, cores: int, runs: int,
    seconds: float = 4.0, precision: str = "auto",
) -> list[Layout]:  # fmt: skip
    """Every candidate layout, each measured with its workers running at the same time."""
    out = []
    for workers, threads in candidates(cores, runs):
        argv = [sys.executable, "-m", "experiments.run.layout", json.dumps(model)]
        argv += ["--batch", str(batch), "--size", str(size), "--chans", str(chans)]
        argv += ["--classes", str(classes), "--seconds", str(seconds), "--probe"]
        argv += ["--precision", precision]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), ABLATE_THREADS=str(threads))
        procs = [
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(workers)
        ]
        speeds = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        out.append(Layout(workers, threads, sum(speeds)))
    return out


def choose(spec, profile: str, runs: int, cores: int | None = None) -> tuple[Layout, list[Layout]]:
    """The layout for ``runs`` pending runs of grid ``spec`` under ``profile``."""
    from experiments.run.data import DataConfig, data_info

    cores = cores or os.cpu_count() or 1
    base = spec.resolved_base(profile)
    data = DataConfig(**base["data"])
    info = data_info(data)
    layouts = measure(
        base["model"], data.batch_size, info.size, info.channels, info.num_classes or 10,
        cores, runs, precision=base.get("train", {}).get("precision", "auto"),
    )  # fmt: skip
    return pick(layouts), layouts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help='the model as JSON, e.g. {"name": "localvit_micro"}')
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--chans", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--cores", type=int, default=None)
    p.add_argument("--precision", default="auto", help="train.precision of the runs")
    p.add_argument("--probe", action="store_true", help="one probe: print this process's img/s")
    args = p.parse_args(argv)
    model = json.loads(args.model)
    if args.probe:
        import torch

        torch.set_num_threads(int(os.environ.get("ABLATE_THREADS", torch.get_num_threads())))
        print(probe_img_s(model, args.batch, args.size, args.chans, args.classes, args.seconds,
                          args.precision))  # fmt: skip
        return 0
    cores = args.cores or os.cpu_count() or 1
    layouts = measure(
        model, args.batch, args.size, args.chans, args.classes, cores, cores, args.seconds,
        args.precision,
    )  # fmt: skip
    for x in layouts:
        print(f"{x.workers} worker(s) x {x.threads} thread(s): {x.img_s:.0f} img/s")
    best = pick(layouts)
    print(f"picked {best.workers} x {best.threads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
