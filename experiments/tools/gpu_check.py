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
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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
QUICK_IMAGES_PER_RUN = 3 * 4000 + 2000 + 10000  # 3 epochs of training, validation, test


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
    p.add_argument("--models", nargs="+", default=MICRO_MODELS)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrent", type=int, default=4, help="processes sharing the device")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", default="results/bench/gpu.csv")
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
        runs_h = total * 3600 / QUICK_IMAGES_PER_RUN
        rows.append({"model": name, "setting": f"{best} x{args.concurrent} processes",
                     "img_s": total, "runs_per_hour": runs_h})  # fmt: skip
        print(f"{name}: {args.concurrent} processes at once: {total:.0f} img/s, "
              f"about {runs_h:.0f} quick-profile runs per hour on one device", flush=True)  # fmt: skip
    df = pd.DataFrame(rows).assign(
        device=label,
        batch=args.batch,
        torch=torch.__version__,
        date=pd.Timestamp.now("UTC").isoformat(),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TORCH_CUDNN_V8_API_ENABLED", "1")
    sys.exit(main())
