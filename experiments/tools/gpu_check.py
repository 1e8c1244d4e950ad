"""The GPU path in one prepared script: a few minutes, figures under ``results/bench/gpu.csv``.

    python -m experiments.tools.gpu_check                 # on a machine with a GPU
    python -m experiments.tools.gpu_check --device cpu --seconds 0.2 --concurrent 1  # dry run

For every micro model it times a training step (AdamW, cross-entropy, batch ``--batch``) with
the data already on the device and the augmentation done there as tensor ops (the data
module's ``random_crop_flip``), in four settings: fp32; bf16 autocast; bf16 + channels_last;
bf16 + channels_last + ``torch.compile``. MFU is model FLOP/s over the device's measured
matmul peak of the same dtype. A micro model cannot fill a large GPU alone, so the best
setting is then run by ``--concurrent`` processes at once on the one GPU: their summed images
per second, and the quick-profile runs per hour that gives, are the figures that matter for a
campaign. Nothing is downloaded: the inputs are random tensors of the quick profile's shape.

``--grid SPEC`` then runs that grid end to end at the quick profile through the runner, as a
user would (``python -m experiments run``, Lightning, the real data, ``--grid-workers``
processes sharing the GPU), in a scratch results folder: its wall time gives the real runs per
hour, and its accuracies, set beside the committed CPU (fp32) table's, say whether the GPU path
(bf16 autocast, channels_last) trains the models as well. Its per-run table is written beside
``--out`` (``gpu_runs.csv``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import timm
import torch

import modules  # noqa: F401
from experiments.run.data import random_crop_flip
from experiments.tools.efficiency import MICRO_MODELS, step_flops

SETTINGS = {
    "fp32": {"bf16": False, "channels_last": False, "compile": False},
    "bf16": {"bf16": True, "channels_last": False, "compile": False},
    "bf16+channels_last": {"bf16": True, "channels_last": True, "compile": False},
    "bf16+channels_last+compile": {"bf16": True, "channels_last": True, "compile": True},
}
PROFILES = Path(__file__).resolve().parents[2] / "ablations" / "profiles.yaml"


def quick_training_images() -> int:
    """Training images of one quick-profile run (steps x batch): the microbenchmark's runs per
    hour count training alone, an upper bound that ``--grid`` measures for real."""
    from experiments.config.toplevel import load_profile_defaults

    quick = load_profile_defaults(PROFILES)["quick"]
    return int(quick["train"]["steps"]) * int(quick["data"]["batch_size"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float) -> float:
    n = 8192 if device.type == "cuda" else 512  # a CPU dry run must not wait on emulated bf16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    _sync(device)
    return count * 2 * n**3 / (time.perf_counter() - start)


def time_setting(name: str, setting: dict, device, batch: int, seconds: float) -> dict:
    """Images per second of one model in one setting, data and augmentation on the device."""
    net = timm.create_model(name, num_classes=10, in_chans=1).to(device).train()
    memory = torch.channels_last if setting["channels_last"] else torch.contiguous_format
    net = net.to(memory_format=memory)
    flops = step_flops(net, torch.randn(batch, 1, 28, 28, device=device),
                       torch.randint(0, 10, (batch,), device=device))  # fmt: skip
    model = torch.compile(net) if setting["compile"] else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=True)  # as the runs' AdamW
    images = torch.randint(0, 256, (50 * batch, 1, 28, 28), device=device, dtype=torch.uint8)
    labels = torch.randint(0, 10, (50 * batch,), device=device)

    def step(i: int) -> None:
        idx = torch.randint(0, len(images), (batch,), device=device)
        x = random_crop_flip(images[idx].float() / 255, 2, True).contiguous(memory_format=memory)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setting["bf16"]):
            loss = torch.nn.functional.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(5 if setting["compile"] else 3):
        step(i)
    _sync(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(steps)
        steps += 1
    _sync(device)
    elapsed = time.perf_counter() - start
    return {"img_s": steps * batch / elapsed, "step_flops": flops, "steps": steps}


def concurrent(name: str, setting: str, n: int, batch: int, seconds: float, device: str) -> float:
    """Summed img/s of ``n`` processes training ``name`` at once on the one device."""
    argv = [sys.executable, "-m", "experiments.tools.gpu_check", "--probe", name, "--setting",
            setting, "--batch", str(batch), "--seconds", str(seconds), "--device", device]  # fmt: skip
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    return sum(json.loads(p.communicate()[0].strip().splitlines()[-1])["img_s"] for p in procs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", nargs="*", default=MICRO_MODELS)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrent", type=int, default=4, help="processes sharing the device")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", default="results/bench/gpu.csv")
    p.add_argument("--grid", default=None, help="then run this grid spec end to end")
    p.add_argument("--grid-workers", type=int, nargs="+", default=[8],
                   help="processes sharing the device in the --grid run (one run each)")  # fmt: skip
    p.add_argument("--grid-seeds", type=int, default=3)
    p.add_argument("--grid-profile", default="quick")
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--setting", default="bf16+channels_last", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.probe:
        out = time_setting(args.probe, SETTINGS[args.setting], device, args.batch, args.seconds)
        print(json.dumps(out))
        return 0
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; use --device cpu for a dry run", file=sys.stderr)
        return 1
    peaks = {
        False: matmul_peak(device, torch.float32, min(args.seconds, 2.0)),
        True: matmul_peak(device, torch.bfloat16, min(args.seconds, 2.0)),
    }
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = []
    for name in args.models:
        for setting, opts in SETTINGS.items():
            if opts["compile"] and args.no_compile:
                continue
            try:
                r = time_setting(name, opts, device, args.batch, args.seconds)
            except Exception as err:  # compile may be unavailable; record it and go on
                rows.append({"model": name, "setting": setting, "error": str(err)[:300]})
                continue
            mfu = r["step_flops"] * r["img_s"] / args.batch / peaks[opts["bf16"]]
            rows.append({"model": name, "setting": setting, "img_s": r["img_s"], "mfu": mfu})
            print(f"{name} {setting}: {r['img_s']:.0f} img/s, MFU {100 * mfu:.1f}%", flush=True)
        ok = [
            r for r in rows if r["model"] == name and "img_s" in r and "compile" not in r["setting"]
        ]
        best = max(ok, key=lambda r: r["img_s"])["setting"]
        total = concurrent(name, best, args.concurrent, args.batch, args.seconds, args.device)
        runs_h = total * 3600 / quick_training_images()
        rows.append({"model": name, "setting": f"{best} x{args.concurrent} processes",
                     "img_s": total, "runs_per_hour": runs_h})  # fmt: skip
        print(f"{name}: {args.concurrent} processes at once: {total:.0f} img/s, "
              f"about {runs_h:.0f} quick-profile runs per hour on one device (training "
              "steps only)", flush=True)  # fmt: skip
        _write(rows, label, args)  # after every model: a run cut short keeps what it measured
    for workers in args.grid_workers if args.grid else []:
        rows.append(
            run_grid(args.grid, workers, args.grid_seeds, Path(args.out), args.grid_profile)
        )
        _write(rows, label, args)
    print(f"wrote {args.out}")
    return 0


def _write(rows: list[dict], label: str, args) -> None:
    df = pd.DataFrame(rows).assign(
        device=label,
        batch=args.batch,
        torch=torch.__version__,
        date=pd.Timestamp.now("UTC").isoformat(),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)


def run_grid(spec: str, workers: int, seeds: int, out: Path, profile: str = "quick") -> dict:
    """Run grid ``spec`` at ``profile`` with ``workers`` processes, as a user would, in a
    scratch results folder; its runs go to ``gpu_runs.csv`` beside ``out``, and the returned
    row holds the wall time, the runs per hour and the test top-1 against the committed table's
    (seeds ``0..seeds-1`` on both sides)."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "experiments", "run", spec, "--profile", profile,
                "--workers", str(workers), "--seeds", str(seeds), "--results", f"{tmp}/results",
                "--storage", f"{tmp}/queue.journal", "--no-progress"]  # fmt: skip
        start = time.perf_counter()
        rc = subprocess.run(argv).returncode
        wall = time.perf_counter() - start
        tables = [p for p in Path(tmp, "results").rglob("*.csv") if ".epochs" not in p.name]
        runs = pd.concat([pd.read_csv(p) for p in tables]) if tables else pd.DataFrame()
        if tables:
            dest = out.with_name("gpu_runs.csv")
            dest.parent.mkdir(parents=True, exist_ok=True)
            runs.assign(workers=workers).to_csv(dest, index=False)
            shutil.copy(tables[0].with_name(tables[0].stem + ".epochs.csv"),
                        out.with_name("gpu_runs.epochs.csv"))  # fmt: skip
    ok = runs[runs["status"] == "ok"] if len(runs) else runs
    row = {"model": spec, "setting": f"grid x{workers} processes", "exit_status": rc,
           "runs": len(ok), "wall_s": wall, "runs_per_hour": len(ok) * 3600 / wall}  # fmt: skip
    if len(ok):
        row |= {"run_s_median": ok["run_s"].median(), "test_top1": ok["test_top1"].mean()}
        committed = _committed_table(ok)
        if committed is not None:
            cpu = committed[committed["seed"] < seeds]
            cpu = cpu[cpu["cell"].isin(ok["cell"])].groupby("cell")["test_top1"].mean()
            gpu = ok.groupby("cell")["test_top1"].mean()
            row["test_top1_minus_committed_cpu"] = float((gpu - cpu).mean())
            for cell in gpu.index:
                print(
                    f"  {cell}: here {gpu[cell]:.2f}, committed {cpu.get(cell, float('nan')):.2f}"
                )
    print(
        f"{spec}: {row['runs']} runs with {workers} processes in {wall:.0f} s: "
        f"{row['runs_per_hour']:.0f} runs per hour on one device",
        flush=True,
    )
    return row


def _committed_table(runs: pd.DataFrame) -> pd.DataFrame | None:
    """The committed table of the grid and profile these runs belong to, if there is one."""
    from experiments.run.store import result_paths

    path, _ = result_paths(runs["grid"].iloc[0], runs["profile"].iloc[0])
    if not path.is_file():
        return None
    df = pd.read_csv(path)
    return df[df["status"] == "ok"]


if __name__ == "__main__":
    os.environ.setdefault("TORCH_CUDNN_V8_API_ENABLED", "1")
    sys.exit(main())
