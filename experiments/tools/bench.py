"""Speed figures that belong in a benchmark, not in a timed test (``make bench``).

Every figure is a ratio measured in one process with interleaved repeats, so a noisy shared
machine cancels out as far as it can:

- ``loop``: training throughput of the full Lightning loop (``train_run``: data module,
  device-side augmentation, metrics, schedule, clipping) divided by a bare PyTorch loop over
  the same model and the same in-memory tensors, timed before and after each run.
- ``models``: training-step throughput of each variant divided by its baseline at the quick
  profile's input (localvit_micro / deit_micro, ...).
- ``small-map``: training-step throughput of models whose convs pad explicitly, or run as a
  matmul, on maps smaller than the kernel (``modules.layers.small_map_conv``) over the same
  models with plain ``nn.Conv2d``, and over the same models with explicit padding only (the
  matmul path off), same weights.
- ``class-token``: training-step throughput of the ViTs whose head reads the class token, as
  ``forward`` runs them (the last block for the class token alone, LocalViT's unreachable last
  FFN not at all) over the whole network on every token (``cost.architecture_forward``, what
  the official code computes), same weights, with the largest difference between their logits.
- ``compile``: training-step throughput of every micro model under ``torch.compile``
  (inductor) over the same model in eager mode, same weights, with the compile time; on CPU
  this decides whether ``train.compile`` is worth turning on for a run.
- ``optimizer``: the AdamW step of every micro model, the per-tensor loop (PyTorch's CPU
  default) against the fused kernel the runs use, on the same gradients, with the largest
  difference between their updated weights.
- ``eval-batch``: inference throughput (``torch.inference_mode``, as Lightning's validation
  and test) of every micro model at several batch sizes: the profiles' ``eval_batch_size``.
- ``eval-fold``: inference throughput of every micro model with BatchNorm, as evaluation
  runs it (each BatchNorm folded into the conv beside it: ``modules.layers.bn_folding``) over
  the network as it trains, interleaved, with the largest difference between their logits.
- ``allocator``: training steps of every micro model with freed memory kept in the process
  (what every run does: ``experiments.run.allocator``) over the C library's default
  allocator, each arm in a fresh process, with the page faults a step
  (``experiments.tools.allocator_bench``).
- ``mfu``, ``overhead``, ``layout``: how much of the machine a run uses
  (``experiments.tools.efficiency``): MFU of every micro model's training step, the fixed
  overhead of a pilot- and a quick-profile run, and the workers x threads layouts.

Results are printed and written to ``results/bench/<name>.csv``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from pathlib import Path

import pandas as pd
import timm
import torch

import modules  # noqa: F401
from experiments.run.cost import architecture_forward
from experiments.run.data import DataConfig, random_crop_flip
from experiments.run.datamodule import ImageDataModule
from experiments.run.recipe import fused_adamw_ok
from experiments.run.store import atomic_write_csv, merge_setting_rows, provenance, results_root
from experiments.run.train import train_run
from experiments.tools.timing import bracketed, clock_name, interleaved, seconds_per_call

TINY_32PX = {"img_size": 32, "patch_size": 4, "in_chans": 3}
# (variant, baseline, toggles for both, toggles for the variant only)
MODEL_PAIRS = [
    ("localvit_micro", "deit_micro", {}, {}),
    ("localvit_tiny", "deit_tiny_ablate", TINY_32PX, {}),
    # LocalViT-T has 4 heads where DeiT-T has 3: with equal heads the ratio is the FFN's cost
    ("localvit_tiny", "deit_tiny_ablate", TINY_32PX, {"heads": 3}),
    ("efficientmod_micro", "deit_micro", {}, {}),
]


def bare_loop_img_s(model_name: str, data: dict, steps: int, model_kwargs: dict) -> float:
    """A plain PyTorch loop: same model, same tensors, same augmentation, AdamW, no Lightning."""
    dm = ImageDataModule(DataConfig(**data))
    dm.setup()
    c, h, _ = dm.input_shape
    model = timm.create_model(
        model_name, num_classes=dm.num_classes, in_chans=c, img_size=h, **model_kwargs
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused_adamw_ok(model))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    bs, n = dm.cfg.batch_size, len(dm.train)
    images, seconds, done = 0, 0.0, 0
    while done < steps:
        order = torch.randperm(n)
        for i in range(0, n - bs + 1, bs):
            t0 = time.perf_counter()
            idx = order[i : i + bs]
            x, y = dm.train.x[idx], dm.train.y[idx]
            x = dm.normalize(random_crop_flip(x, dm.cfg.crop_padding, dm.cfg.flip))
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if done >= 2:  # warm-up steps not timed, as in the Lightning measurement
                seconds += time.perf_counter() - t0
                images += bs
            done += 1
            if done >= steps:
                break
    return images / seconds


def bench_loop(
    repeats: int, data: dict, epochs: int, model: str, model_kwargs: dict
) -> pd.DataFrame:
    rows = []
    cfg = DataConfig(**data)
    steps = epochs * (cfg.subset or 60000) // cfg.batch_size
    for r in range(repeats):
        # the bare loop on both sides of the run: a shared host's speed drifts between them
        res, bare = bracketed(
            partial(train_run, {"name": model, **model_kwargs}, data,
                    {"epochs": epochs, "grad_clip": None}, seed=r, progress=False,
                    measure_cost=False),
            partial(bare_loop_img_s, model, data, steps, model_kwargs),
        )  # fmt: skip
        rows.append(
            {
                "repeat": r,
                "model": model,
                "lightning_img_s": res["train_img_s"],
                "bare_img_s": bare,
                "ratio": res["train_img_s"] / bare,
            }
        )
        print(
            f"loop repeat {r}: lightning {res['train_img_s']:.0f} img/s, bare {bare:.0f} img/s, "
            f"ratio {rows[-1]['ratio']:.3f}",
            flush=True,
        )
    return pd.DataFrame(rows)


def bench_models(repeats: int, batch: int, steps: int, pairs=MODEL_PAIRS) -> pd.DataFrame:
    """Training-step img/s of each variant over its baseline, interleaved, after one untimed
    round (the first steps of a model allocate and are slower; a warm-up of two steps is not
    enough on CPU)."""
    rows = []
    for variant, baseline, kwargs, variant_only in pairs:
        kw = {"img_size": 28, "in_chans": 1, "num_classes": 10, **kwargs}
        if not timm.is_model(variant):
            continue

        models = {
            "variant": _build(variant, kw, variant_only),
            "baseline": _build(baseline, kw, {}),
        }
        x = torch.randn(batch, kw["in_chans"], kw["img_size"], kw["img_size"])
        y = torch.randint(0, 10, (batch,))
        speed = interleaved(models, x, y, repeats, steps)
        toggles = " ".join(f"{k}={v}" for k, v in variant_only.items())
        ratios = []
        for a, b in zip(speed["variant"], speed["baseline"], strict=True):
            ratios.append(a / b)
            rows.append(
                {
                    "variant": variant,
                    "variant_toggles": toggles,
                    "baseline": baseline,
                    "input": f"{kw['in_chans']}x{kw['img_size']}",
                    "batch": batch,
                    "threads": torch.get_num_threads(),
                    "variant_img_s": a,
                    "baseline_img_s": b,
                    "ratio": a / b,
                }
            )
        label = f"{variant}{f' ({toggles})' if toggles else ''} / {baseline}"
        print(
            f"{label} at {kw['img_size']} px: median ratio {statistics.median(ratios):.3f}",
            flush=True,
        )
    return pd.DataFrame(rows)


# (model, its keywords, input channels and size): maps smaller than a depth-wise kernel
SMALL_MAP_MODELS = [
    ("efficientmod_micro", {}, 1, 28),  # 7x7 kernels on the 4x4 maps of stages 3 and 4
    ("efficientmod_micro", {"attention": True}, 1, 28),
    ("efficientmod_micro", {}, 3, 32),
    ("localvit_tiny", {"img_size": 32}, 3, 32),  # patch 16: a 2x2 map under 3x3 kernels
]


def bench_small_map(repeats: int, batch: int, steps: int) -> pd.DataFrame:
    """img/s with ``SmallMapConv2d`` over the same model with plain ``nn.Conv2d``, and over
    the same model with its dense (matmul) path off, so explicit padding only."""
    import copy

    from modules.layers.small_map_conv import SmallMapConv2d

    rows = []
    for name, kwargs, chans, size in SMALL_MAP_MODELS:
        ours = timm.create_model(name, num_classes=10, in_chans=chans, **kwargs)
        plain, padded = copy.deepcopy(ours), copy.deepcopy(ours)
        for m in plain.modules():
            if type(m) is SmallMapConv2d:
                m.__class__ = torch.nn.Conv2d
        for m in padded.modules():
            if type(m) is SmallMapConv2d:
                m.dense_min_taps = float("inf")
        x = torch.randn(batch, chans, size, size).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,))
        models = {"small_map": ours, "conv2d": plain, "explicit_padding": padded}
        speed = interleaved(models, x, y, repeats, steps)
        toggles = " ".join(f"{k}={v}" for k, v in kwargs.items())
        for a, b, c in zip(*speed.values(), strict=True):
            rows.append({"model": name, "toggles": toggles, "input": f"{chans}x{size}",
                         "batch": batch, "threads": torch.get_num_threads(), "clock": clock_name(x),
                         "small_map_img_s": a, "conv2d_img_s": b, "ratio": a / b,
                         "explicit_padding_img_s": c, "ratio_vs_explicit_padding": a / c})  # fmt: skip
        ratio = statistics.median(r["ratio"] for r in rows[-repeats:])
        dense = statistics.median(r["ratio_vs_explicit_padding"] for r in rows[-repeats:])
        print(f"{name} {toggles} {chans}x{size}: SmallMapConv2d / Conv2d {ratio:.3f}, "
              f"/ explicit padding only {dense:.3f}", flush=True)  # fmt: skip
    return pd.DataFrame(rows)


def bench_compile(repeats: int, batch: int, steps: int, models=None) -> pd.DataFrame:
    """img/s of ``torch.compile(model)`` over the eager model (the same module, so the same
    weights), at the quick profile's input; the first compiled step's wall time is the compile
    cost a run pays once (plus once more for evaluation, which changes the graph)."""
    from experiments.tools.efficiency import INPUT, MICRO_MODELS
    from experiments.tools.timing import adamw, train_step

    rows = []
    for name in models or MICRO_MODELS:
        eager = timm.create_model(name, num_classes=10, in_chans=INPUT[0]).train()
        compiled = torch.compile(eager)
        x, y = torch.randn(batch, *INPUT), torch.randint(0, 10, (batch,))
        start = time.perf_counter()
        train_step(compiled, adamw(compiled), x, y)
        compile_s = time.perf_counter() - start
        speed = interleaved({"compiled": compiled, "eager": eager}, x, y, repeats, steps)
        for a, b in zip(speed["compiled"], speed["eager"], strict=True):
            rows.append({"model": name, "input": "x".join(map(str, INPUT)), "batch": batch,
                         "threads": torch.get_num_threads(), "clock": clock_name(x),
                         "compile_s": compile_s, "compiled_img_s": a, "eager_img_s": b,
                         "ratio": a / b})  # fmt: skip
        ratio = statistics.median(r["ratio"] for r in rows[-repeats:])
        print(f"{name}: compiled / eager {ratio:.3f}, compile {compile_s:.0f} s", flush=True)
    return pd.DataFrame(rows)


def bench_optimizer(seconds: float = 2.0, models=None) -> pd.DataFrame:
    """Seconds per AdamW step, loop vs fused, and how far one step of each moves apart."""
    import copy

    import timm.optim

    from experiments.tools.efficiency import INPUT, MICRO_MODELS

    rows = []
    for name in models or MICRO_MODELS:
        net = timm.create_model(name, num_classes=10, in_chans=INPUT[0])
        x, y = torch.randn(64, *INPUT), torch.randint(0, 10, (64,))
        torch.nn.functional.cross_entropy(net(x), y).backward()
        nets, times = {}, {}
        for kind in ("loop", "fused"):
            nets[kind] = copy.deepcopy(net)  # the same weights
            for p, q in zip(net.parameters(), nets[kind].parameters(), strict=True):
                q.grad = p.grad.clone()  # and the same gradients
            opt = timm.optim.create_optimizer_v2(
                nets[kind], "adamw", lr=2e-3, weight_decay=0.05, fused=kind == "fused"
            )
            opt.step()  # the step compared below; the timed ones follow
            snapshot = [p.detach().clone() for p in nets[kind].parameters()]
            times[kind] = seconds_per_call(opt.step, seconds, x)
            nets[kind] = snapshot
        diff = max(
            (a - b).abs().max().item() for a, b in zip(nets["loop"], nets["fused"], strict=True)
        )
        rows.append({"model": name, "tensors": len(nets["loop"]),
                     "threads": torch.get_num_threads(), "clock": clock_name(x),
                     "loop_ms": 1e3 * times["loop"], "fused_ms": 1e3 * times["fused"],
                     "speedup": times["loop"] / times["fused"],
                     "max_abs_diff_one_step": diff})  # fmt: skip
        print(
            f"{name}: AdamW step loop {1e3 * times['loop']:.2f} ms, fused "
            f"{1e3 * times['fused']:.2f} ms ({times['loop'] / times['fused']:.1f}x); one step "
            f"apart by at most {diff:.1e}",
            flush=True,
        )
    return pd.DataFrame(rows)


def bench_eval_batch(batches=(64, 128, 256, 512, 1000), seconds: float = 2.0, models=None):
    """Evaluation img/s per batch size: on a CPU the largest batch is not the fastest (its
    activations outgrow the caches), so the profiles take the fastest."""
    from experiments.tools.efficiency import INPUT, MICRO_MODELS

    rows = []
    for name in models or MICRO_MODELS:
        net = timm.create_model(name, num_classes=10, in_chans=INPUT[0]).eval()
        speeds = {}
        for batch in batches:
            x = torch.randn(batch, *INPUT)
            with torch.inference_mode():
                net(x)
                speeds[batch] = batch / seconds_per_call(partial(net, x), seconds, x)
        best = max(speeds, key=speeds.get)
        for batch, img_s in speeds.items():
            rows.append({"model": name, "input": "x".join(map(str, INPUT)), "batch": batch,
                         "threads": torch.get_num_threads(), "clock": clock_name(),
                         "infer_img_s": img_s, "vs_fastest": img_s / speeds[best],
                         "fastest": batch == best})  # fmt: skip
        figures = ", ".join(f"{b}: {v:.0f}" for b, v in speeds.items())
        print(f"{name} eval img/s by batch: {figures}; fastest {best}", flush=True)
    return pd.DataFrame(rows)


def bench_eval_fold(repeats: int = 5, batch: int = 128, seconds: float = 1.0, models=None):
    """Evaluation img/s with the BatchNorms folded over the same network unfolded (same
    weights, random statistics), at the quick profile's evaluation batch."""
    from experiments.tools.efficiency import INPUT, MICRO_MODELS
    from modules.layers.bn_folding import folded_copy, has_batchnorm

    rows = []
    for name in models or MICRO_MODELS:
        net = timm.create_model(name, num_classes=10, in_chans=INPUT[0])
        if not has_batchnorm(net):
            continue
        with torch.no_grad():  # statistics as after training, not the identity of a new BN
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.running_mean.normal_(0, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
        arms = {"as_trained": net.eval(), "folded": folded_copy(net)}
        x = torch.randn(batch, *INPUT)
        with torch.inference_mode():
            diff = (arms["as_trained"](x) - arms["folded"](x)).abs().max().item()
            speed = {k: [] for k in arms}
            for _ in range(repeats):  # interleaved, so drift hits both arms alike
                for k, m in arms.items():
                    speed[k].append(batch / seconds_per_call(partial(m, x), seconds, x))
        for r in range(repeats):
            rows.append({"model": name, "input": "x".join(map(str, INPUT)), "batch": batch,
                         "threads": torch.get_num_threads(), "clock": clock_name(), "repeat": r,
                         "as_trained_img_s": speed["as_trained"][r],
                         "folded_img_s": speed["folded"][r],
                         "speedup": speed["folded"][r] / speed["as_trained"][r],
                         "max_logit_diff": diff})  # fmt: skip
        pairs = zip(speed["folded"], speed["as_trained"], strict=True)
        ratio = statistics.median(folded / unfolded for folded, unfolded in pairs)
        print(f"{name} evaluation, BatchNorm folded / as trained: {ratio:.3f} "
              f"(median of {repeats}); logits differ by at most {diff:.1e}", flush=True)  # fmt: skip
    return pd.DataFrame(rows)


# (model, its keywords): the ViTs whose head reads the class token, at the quick profile's input
CLASS_TOKEN_MODELS = [
    ("deit_micro", {}),
    ("localvit_micro", {}),  # the locality FFN in the last block: not computed at all
    ("localvit_micro", {"layers": "low"}),  # DeiT's MLP in the last block
]


class EveryToken(torch.nn.Module):
    """The whole network on every token (``architecture_forward``), as a module to time."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return architecture_forward(self.model)(x)


def bench_class_token(repeats: int, batch: int, steps: int) -> pd.DataFrame:
    """img/s of ``forward`` over the whole network on every token, same weights."""
    import copy

    rows = []
    for name, kwargs in CLASS_TOKEN_MODELS:
        model = timm.create_model(name, num_classes=10, in_chans=1, img_size=28, **kwargs)
        whole = EveryToken(copy.deepcopy(model))
        x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
        with torch.no_grad():
            diff = (model.eval()(x) - whole.eval()(x)).abs().max().item()
        speed = interleaved({"class_token": model, "every_token": whole}, x, y, repeats, steps)
        toggles = " ".join(f"{k}={v}" for k, v in kwargs.items())
        for a, b in zip(*speed.values(), strict=True):
            rows.append({"model": name, "toggles": toggles, "input": "1x28", "batch": batch,
                         "threads": torch.get_num_threads(), "clock": clock_name(x),
                         "class_token_img_s": a, "every_token_img_s": b, "ratio": a / b,
                         "logit_diff": diff})  # fmt: skip
        ratio = statistics.median(r["ratio"] for r in rows[-repeats:])
        print(f"{name} {toggles}: class token only / every token {ratio:.3f} "
              f"(logits within {diff:.1e})", flush=True)  # fmt: skip
    return pd.DataFrame(rows)


def _build(name: str, kw: dict, extra: dict) -> torch.nn.Module:
    """``img_size`` goes to the ViTs only (the convolutional models take any size)."""
    takes_size = name.startswith(("deit", "localvit"))
    own = {k: v for k, v in kw.items() if k != "img_size" or takes_size}
    return timm.create_model(name, **{**own, **extra})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments bench", description=__doc__)
    p.add_argument(
        "--only",
        choices=(
            "loop",
            "models",
            "class-token",
            "small-map",
            "compile",
            "eval-batch",
            "eval-fold",
            "optimizer",
            "allocator",
            "mfu",
            "overhead",
            "overhead-runs",
            "layout",
        ),
        default=None,
        help="one figure; overhead-runs reads the finished runs' tables only (no training)",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--subset", type=int, default=4000, help="Fashion-MNIST images for the loop benchmark"
    )
    p.add_argument("--data", default="fashion_mnist")
    p.add_argument(
        "--threads",
        type=lambda text: tuple(int(t) for t in text.split(",")),
        default=None,
        help="thread counts of the MFU and small-map figures, e.g. 1 or 1,2 (default: 1 and all)",
    )
    p.add_argument("--results", default=None, help="results folder (default results/)")
    p.add_argument("--profiles", nargs="+", default=["pilot", "quick"],
                   help="the profiles whose run the overhead figure times")  # fmt: skip
    args = p.parse_args(argv)
    out = results_root(args.results) / "bench"
    prov = provenance()

    def stamped(df: pd.DataFrame) -> pd.DataFrame:
        """Provenance columns, without overwriting a figure's own (its thread count)."""
        return df.assign(**{k: v for k, v in prov.items() if k not in df})

    def write(df: pd.DataFrame, filename: str, setting: list[str]) -> None:
        """The stamped figures, beside the rows of other settings and other CPUs."""
        path = Path(out) / filename
        df = stamped(df)
        if path.exists():
            df = merge_setting_rows(path, df, setting)
        atomic_write_csv(df, path)

    if args.only in (None, "loop"):
        data = {"name": args.data, "subset": args.subset, "val_size": 1000, "batch_size": 128}
        df = bench_loop(args.repeats, data, 1, "deit_micro", {})
        write(df, "loop.csv", ["model"])
        print(f"Lightning / bare loop: median {df['ratio'].median():.3f} over {len(df)} repeats")
    if args.only in (None, "models"):
        df = bench_models(args.repeats, 128, 10)
        write(df, "models.csv", ["variant", "variant_toggles", "baseline", "input", "threads"])
        keys = ["variant", "variant_toggles", "baseline", "input"]
        print(df.groupby(keys)["ratio"].median().to_string())
    if args.only in (None, "small-map"):
        saved, parts = torch.get_num_threads(), []
        try:
            for n in args.threads or sorted({1, saved}):
                torch.set_num_threads(n)
                parts.append(bench_small_map(args.repeats, 64, 3))
        finally:
            torch.set_num_threads(saved)
        write(pd.concat(parts, ignore_index=True), "small_map_conv.csv", ["threads"])
    single = (args.threads or (1,))[0]  # these figures take one thread count
    figures = [("class-token", lambda: bench_class_token(args.repeats, 64, 5), "class_token.csv",
                ["model", "toggles"]),
               ("compile", lambda: bench_compile(args.repeats, 64, 5), "compile.csv", ["model"]),
               ("optimizer", bench_optimizer, "optimizer.csv", ["model"]),
               ("eval-batch", bench_eval_batch, "eval_batch.csv", ["model"]),
               ("eval-fold", lambda: bench_eval_fold(args.repeats), "eval_fold.csv",
                ["model", "batch"])]  # fmt: skip
    for name, bench, filename, setting in figures:
        # compile: minutes of compiling, so only on request
        if args.only == name or (args.only is None and name != "compile"):
            saved = torch.get_num_threads()
            try:
                torch.set_num_threads(single)
                df = bench()
            finally:
                torch.set_num_threads(saved)
            write(df, filename, [*setting, "threads"])
    from experiments.tools import efficiency

    if args.only in (None, "allocator"):
        from experiments.tools.allocator_bench import bench_allocator

        write(bench_allocator(args.repeats), "allocator.csv", ["threads"])
    if args.only in (None, "mfu"):
        df = stamped(efficiency.bench_mfu(threads=args.threads))
        path = Path(out) / "mfu.csv"
        if path.exists():  # keep the thread counts not re-run, and other CPUs' figures
            df = merge_setting_rows(path, df, ["threads"])
        atomic_write_csv(df.sort_values(["threads"], kind="stable"), path)
    if args.only in (None, "overhead", "overhead-runs"):
        from experiments.analysis import stats

        table = efficiency.overhead_in_runs(stats.load_results(results_root(args.results)))
        atomic_write_csv(stamped(table), Path(out) / "overhead_runs.csv")
        print(table.to_string(index=False), flush=True)
    if args.only in (None, "overhead"):
        # evaluation as the runs do it (BatchNorm folded) and as the network trains
        rows = [efficiency.bench_overhead(profile=p, train_overrides={"fold_bn": fold})
                for p in args.profiles for fold in (True, False)]  # fmt: skip
        write(pd.DataFrame(rows), "overhead.csv", ["profile", "fold_bn"])
    if args.only in (None, "layout"):
        write(efficiency.bench_layout(), "layout.csv", ["model", "workers", "threads"])
    return 0
