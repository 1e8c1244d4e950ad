"""The model benchmark and the helpers of the official-code comparisons."""

import pandas as pd
import pytest
from conftest import ROOT

from experiments.tools.bench import bench_models

TINY = {"embed_dim": 32, "depth": 2, "heads": 2}


def test_bench_models_rows_and_variant_toggles():
    pairs = [
        ("localvit_micro", "deit_micro", TINY, {}),
        ("localvit_micro", "deit_micro", TINY, {"heads": 4}),
        ("no_such_model", "deit_micro", {}, {}),  # skipped, as an unregistered variant
    ]
    df = bench_models(repeats=2, batch=4, steps=1, pairs=pairs)
    assert len(df) == 4
    assert (df["ratio"] > 0).all()
    assert (df["ratio"] - df["variant_img_s"] / df["baseline_img_s"]).abs().max() < 1e-9
    assert df["variant_toggles"].tolist() == ["", "", "heads=4", "heads=4"]
    assert set(df["input"]) == {"1x28"}


@pytest.mark.filterwarnings("ignore:Importing from timm.models:FutureWarning")
def test_official_file_imports_with_old_timm_paths(tmp_path):
    from experiments.tools.official_source import import_official_file

    path = tmp_path / "models" / "model.py"
    path.parent.mkdir()
    path.write_text(
        "from timm.models.layers import DropPath\n"
        "from timm.models.registry import register_model\n"
        "def build():\n    return DropPath(0.1)\n"
    )
    module = import_official_file(path, "official_test_model")
    assert type(module.build()).__name__ == "DropPath"


def test_mfu_counts_forward_and_backward_flops():
    import torch

    from experiments.tools import efficiency

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10, bias=False))
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    # 3x the forward's 2*8*784*10 (backward about twice the forward)
    assert efficiency.step_flops(net, x, y) == 3 * 2 * 8 * 784 * 10
    before = torch.get_num_threads()
    df = efficiency.bench_mfu(batch=8, seconds=0.2, models=["deit_micro"], threads=(1,))
    row = df.iloc[0]
    assert 0 < row["mfu_fp32"] < 1.5 and row["achieved_gflop_s"] > 0
    assert row["threads"] == 1 and torch.get_num_threads() == before  # the layout is restored
    assert row["bf16"] in ("native", "unsupported on this CPU")
    shares = [row[f"{c}_share"] for c in ("dense", "norm", "elementwise", "copy", "other")]
    assert sum(shares) == pytest.approx(1) and min(shares) >= 0
    assert row["mfu_dense_only"] == pytest.approx(row["mfu_fp32"] / row["dense_share"])


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The prepared GPU script runs end to end (on the CPU here) and writes its table."""
    import pandas as pd

    from experiments.tools import gpu_check

    out = tmp_path / "gpu.csv"
    argv = ["--device", "cpu", "--models", "deit_micro", "--seconds", "0.1", "--batch", "8"]
    grid = ["--grid", "ablations/localvit/layers.yaml", "--grid-profile", "smoke",
            "--grid-workers", "2", "--grid-seeds", "1"]  # fmt: skip
    assert (
        gpu_check.main([*argv, "--concurrent", "1", "--no-compile", "--out", str(out), *grid]) == 0
    )
    df = pd.read_csv(out)
    assert {"fp32", "bf16", "bf16+channels_last", "grid x2 processes"} <= set(df["setting"])
    assert df["runs_per_hour"].notna().sum() == 2  # the shared-device probe and the grid
    runs = pd.read_csv(tmp_path / "gpu_runs.csv")  # the grid ran end to end, as a user runs it
    assert len(runs) == 6 and (runs["status"] == "ok").all() and set(runs["seed"]) == {0}
    assert (tmp_path / "gpu_runs.epochs.csv").is_file()


def test_overhead_in_runs_is_the_time_outside_training():
    """``subset`` images an epoch (validation is carved apart): 4,000 at 100 img/s for 3
    epochs train 120 s of a 160 s run (25% overhead); a step budget caps the images (12 epochs
    of 4,000, but 700 steps of 64: 44,800 images)."""
    from experiments.tools.efficiency import overhead_in_runs

    rows = pd.DataFrame(
        [
            {"run_id": "a", "profile": "pilot", "paper": "p", "status": "ok", "epochs_run": 3,
             "data.subset": 4000, "data.val_size": 2000, "data.batch_size": 64,
             "train.steps": None, "train_img_s": 100.0, "wall_s": 160.0},
            {"run_id": "b", "profile": "quick", "paper": "p", "status": "ok", "epochs_run": 12,
             "data.subset": 4000, "data.val_size": 1000, "data.batch_size": 64,
             "train.steps": 700, "train_img_s": 100.0, "wall_s": 500.0},
            {"run_id": "c", "profile": "quick", "paper": "p", "status": "failed", "epochs_run": 1,
             "data.subset": 5000, "data.val_size": 1000, "data.batch_size": 64,
             "train.steps": 700, "train_img_s": 1.0, "wall_s": 5.0},
        ]
    )  # fmt: skip
    table = overhead_in_runs(rows).set_index("profile")
    assert table.loc["pilot", "overhead_share"] == pytest.approx(0.25)
    assert table.loc["quick", "train_s"] == pytest.approx(448.0)
    assert table.loc["quick", "runs"] == 1


def test_overhead_runs_reads_the_tables_and_trains_nothing(tmp_path):
    """``bench --only overhead-runs`` writes the in-run overhead table from results/ alone."""
    import shutil

    from experiments.tools import bench

    results = tmp_path / "results"
    shutil.copytree(ROOT / "tests" / "fixtures" / "results", results)
    assert bench.main(["--only", "overhead-runs", "--results", str(results)]) == 0
    assert sorted(p.name for p in (results / "bench").iterdir()) == ["overhead_runs.csv"]
    table = pd.read_csv(results / "bench" / "overhead_runs.csv")
    assert set(table["paper"]) == {"efficientmod", "localvit"} and (table["runs"] > 0).all()


def test_bench_small_map_times_both_convs_on_the_same_weights(monkeypatch):
    import torch

    from experiments.tools import bench
    from modules.layers.small_map_conv import SmallMapConv2d

    seen = []

    def fake_interleaved(models, x, y, repeats, steps):
        ours, plain, padded = models["small_map"], models["conv2d"], models["explicit_padding"]
        smc = [m for m in padded.modules() if type(m) is SmallMapConv2d]
        seen.append(
            (
                any(type(m) is SmallMapConv2d for m in ours.modules()),
                any(type(m) is SmallMapConv2d for m in plain.modules()),
                all(
                    torch.equal(a, b) and torch.equal(a, c)
                    for a, b, c in zip(
                        ours.parameters(), plain.parameters(), padded.parameters(), strict=True
                    )
                ),
                bool(smc) and all(m.dense_min_taps == float("inf") for m in smc),
            )
        )
        return {"small_map": [2.0] * repeats, "conv2d": [1.0] * repeats,
                "explicit_padding": [1.6] * repeats}  # fmt: skip

    monkeypatch.setattr(bench, "interleaved", fake_interleaved)
    df = bench.bench_small_map(repeats=2, batch=2, steps=1)
    assert seen == [(True, False, True, True)] * len(bench.SMALL_MAP_MODELS)
    assert len(df) == 2 * len(bench.SMALL_MAP_MODELS) and (df["ratio"] == 2.0).all()
    assert (df["ratio_vs_explicit_padding"] == 1.25).all()
    assert SmallMapConv2d.dense_min_taps == 25  # the arm's setting stays on its copies


def test_provenance_keeps_a_figures_own_thread_count(tmp_path, monkeypatch):
    from experiments.tools import bench, efficiency

    monkeypatch.setattr(
        efficiency, "bench_mfu", lambda threads=None: pd.DataFrame([{"model": "m", "threads": 1}])
    )
    monkeypatch.setattr(bench, "provenance", lambda: {"threads": 99, "git_sha": "x"})
    bench.main(["--only", "mfu", "--threads", "1", "--results", str(tmp_path)])
    df = pd.read_csv(tmp_path / "bench" / "mfu.csv")
    assert df["threads"].tolist() == [1] and df["git_sha"].tolist() == ["x"]


def test_kernel_shares_split_the_step_into_dense_and_the_rest(monkeypatch):
    """The arithmetic on profiler events, with events whose times are given (a timed
    comparison would fail on a busy machine): dense ops count as dense, everything else as
    the rest, and the ceiling is the official step over our dense time."""
    from types import SimpleNamespace

    from experiments.tools import op_shares

    def events(**us):
        return [SimpleNamespace(key=k.replace("__", "::"), self_cpu_time_total=t)
                for k, t in us.items()]  # fmt: skip

    profiles = {
        "ours": events(aten__addmm=300.0, aten__gelu=500.0, aten__mm=100.0, aten__view=100.0),
        "official": events(aten__addmm=300.0, aten__mm=100.0, aten__gelu=1100.0),
    }
    monkeypatch.setattr(op_shares, "profiled_steps", lambda model, x, y, steps: profiles[model])
    shares = op_shares.kernel_shares("ours", None, None, steps=2)
    assert shares["step_s"] == pytest.approx(1000e-6 / 2)
    assert shares["dense_s"] == pytest.approx(400e-6 / 2)
    assert shares["other_s"] == pytest.approx(600e-6 / 2)
    assert shares["dense_share"] == pytest.approx(0.4)
    assert op_shares.class_shares("ours", None, None)["elementwise_share"] == pytest.approx(0.5)
    rows = op_shares.ceiling_rows({"variant": "toy"}, "ours", "official", None, None, steps=2)
    by_impl = {r["impl"]: r for r in rows}
    assert set(by_impl) == {"ours", "official"}
    # the official step (1,500 us) over our dense kernels (400 us)
    assert by_impl["ours"]["ceiling_ours_over_official"] == pytest.approx(1500 / 400)
    assert by_impl["official"]["variant"] == "toy"


def test_a_real_training_step_profiles_into_dense_and_elementwise_kernels():
    """A Linear-GELU-Linear step under the real profiler: its matmuls land in the dense class
    and its GELUs in the elementwise one (op names the classes must keep up with)."""
    import torch

    from experiments.tools.op_shares import class_shares, kernel_shares

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(28 * 28, 64), torch.nn.GELU(), torch.nn.Linear(64, 10)
    )
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    shares = kernel_shares(net, x, y, steps=1)
    assert shares["dense_s"] > 0 and shares["other_s"] > 0
    assert abs(shares["dense_s"] + shares["other_s"] - shares["step_s"]) < 1e-9
    by_class = class_shares(net, x, y, steps=1)
    assert by_class["dense_share"] > 0 and by_class["elementwise_share"] > 0
    assert sum(by_class.values()) == pytest.approx(1.0)


def test_mfu_peak_is_timed_on_both_sides_of_the_steps():
    from experiments.tools.timing import bracketed

    calls = []
    peaks = iter([100.0, 60.0])  # a host that slowed down while the steps ran

    def steps():
        calls.append("steps")
        return 0.5

    def peak():
        calls.append("peak")
        return next(peaks)

    assert bracketed(steps, peak) == (0.5, 80.0)
    assert calls == ["peak", "steps", "peak"]


def test_overhead_times_bare_steps_on_both_sides_of_the_run(monkeypatch):
    from experiments.tools import efficiency

    calls = []
    real = efficiency.step_seconds

    def quick_steps(net, x, y, seconds):
        calls.append(seconds)
        return real(net, x, y, 0.1)

    monkeypatch.setattr(efficiency, "step_seconds", quick_steps)
    monkeypatch.setattr(efficiency, "interpreter_start_s", lambda: 0.0)
    row = efficiency.bench_overhead("casvit_micro", "smoke")
    assert len(calls) == 2  # before and after the run
    assert 0 < row["outside_batches_share"] < 1
    assert row["outside_batches_share"] == pytest.approx(1 - row["train_batches_s"] / row["run_s"])
    assert row["bare_steps_s"] > 0 and row["steps"] == 3  # (256 - 64 validation) / 64, 1 epoch


@pytest.mark.parametrize("only", ["loop", "optimizer", "layout"])
def test_a_bench_rerun_on_another_cpu_keeps_the_first_cpus_rows(tmp_path, monkeypatch, only):
    from experiments.tools import bench, efficiency

    row = {"model": "m", "workers": 1, "threads": 1, "ratio": 1.0}
    fake = lambda *a, **k: pd.DataFrame([row])  # noqa: E731
    monkeypatch.setattr(bench, "bench_loop", fake)
    monkeypatch.setattr(bench, "bench_optimizer", fake)
    monkeypatch.setattr(efficiency, "bench_layout", fake)
    for cpu in ("AVX2", "AVX512", "AVX512"):
        monkeypatch.setattr(bench, "provenance", lambda cpu=cpu: {"cpu_capability": cpu})
        bench.main(["--only", only, "--results", str(tmp_path)])
    name = {"eval-batch": "eval_batch"}.get(only, only)
    df = pd.read_csv(tmp_path / "bench" / f"{name}.csv")
    assert sorted(df["cpu_capability"]) == ["AVX2", "AVX512"]  # the re-run replaced its own


def test_loop_bench_times_the_bare_loop_on_both_sides_of_the_run(monkeypatch):
    from experiments.tools import bench

    speeds = iter([100.0, 300.0])
    monkeypatch.setattr(bench, "bare_loop_img_s", lambda *a: next(speeds))
    data = {"name": "synthetic", "synthetic_size": 16, "synthetic_train": 256,
            "synthetic_test": 64, "val_size": 64, "batch_size": 64}  # fmt: skip
    row = bench.bench_loop(1, data, 1, "deit_micro", {"img_size": 16}).iloc[0]
    assert row["bare_img_s"] == 200.0  # the mean of before and after
    assert row["ratio"] == pytest.approx(row["lightning_img_s"] / 200.0)


def test_class_shares_put_each_op_in_its_class():
    import torch

    from experiments.tools.op_shares import class_shares, op_class

    assert op_class("aten::mm") == "dense"
    assert op_class("aten::native_batch_norm_backward") == "norm"
    assert op_class("aten::gelu_backward") == "elementwise"
    assert op_class("aten::copy_") == "copy"
    assert op_class("autograd::engine::evaluate_function: MmBackward0") == "other"
    torch.manual_seed(0)

    def net(gelus: int, norm: bool) -> torch.nn.Sequential:
        layers = [torch.nn.Flatten(), torch.nn.Linear(28 * 28, 1024)]
        layers += [torch.nn.BatchNorm1d(1024)] if norm else []
        layers += [torch.nn.GELU() for _ in range(gelus)]
        return torch.nn.Sequential(*layers, torch.nn.Linear(1024, 10))

    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    plain = class_shares(net(0, False), x, y, steps=2)
    assert sum(plain.values()) == pytest.approx(1) and plain["norm_share"] == 0
    chain = class_shares(net(40, True), x, y, steps=2)
    assert chain["norm_share"] > 0
    assert chain["elementwise_share"] > plain["elementwise_share"]
    assert chain["dense_share"] < plain["dense_share"]


@pytest.mark.slow
def test_bench_compile_times_the_compiled_and_the_eager_model():
    from experiments.tools.bench import bench_compile

    df = bench_compile(repeats=2, batch=4, steps=1, models=["deit_micro"])
    assert len(df) == 2 and (df["compile_s"] > 0).all()
    assert (df["ratio"] - df["compiled_img_s"] / df["eager_img_s"]).abs().max() < 1e-9


def test_bench_class_token_times_forward_against_every_token(monkeypatch):
    """The class-token figure times ``forward`` against the whole network on the same weights,
    and the two give the same logits up to rounding."""
    from experiments.tools import bench

    monkeypatch.setattr(bench, "CLASS_TOKEN_MODELS", [("deit_micro", {"depth": 2})])
    df = bench.bench_class_token(repeats=2, batch=4, steps=1)
    assert len(df) == 2 and (df["ratio"] > 0).all()
    assert (df["ratio"] - df["class_token_img_s"] / df["every_token_img_s"]).abs().max() < 1e-9
    assert df["logit_diff"].max() < 1e-5  # another computation, the same function


def test_bench_eval_batch_marks_the_fastest_batch():
    from experiments.tools.bench import bench_eval_batch

    df = bench_eval_batch(batches=(4, 8), seconds=0.05, models=["deit_micro"])
    assert df["batch"].tolist() == [4, 8] and df["fastest"].sum() == 1
    fastest = df.loc[df["fastest"], "infer_img_s"].item()
    assert fastest == df["infer_img_s"].max()
    assert (df["vs_fastest"] - df["infer_img_s"] / fastest).abs().max() < 1e-12


def test_bench_optimizer_compares_loop_and_fused_adamw_on_the_same_gradients():
    from experiments.tools.bench import bench_optimizer

    row = bench_optimizer(seconds=0.05, models=["deit_micro"]).iloc[0]
    assert row["loop_ms"] > 0 and row["fused_ms"] > 0
    assert row["speedup"] == pytest.approx(row["loop_ms"] / row["fused_ms"])
    assert row["max_abs_diff_one_step"] < 1e-5  # the same update up to rounding


def test_seconds_per_call_counts_every_call_and_calls_at_least_once():
    from experiments.tools.timing import clock, seconds_per_call

    calls = []
    now = clock()  # the clock seconds_per_call reads: a busy machine slows both alike

    def busy():  # spins: the CPU-time clock does not count a sleep
        start = now()
        while now() - start < 0.002:
            pass
        calls.append(now() - start)

    per_call = seconds_per_call(busy, seconds=0.02)
    assert len(calls) >= 2 and per_call >= 0.002
    # the mean of a call, not the loop's total: the calls' own times plus the loop's overhead
    assert sum(calls) / len(calls) <= per_call < 1.5 * sum(calls) / len(calls)
    calls.clear()
    seconds_per_call(lambda: calls.append(None), seconds=0.0)
    assert len(calls) == 1


def test_a_comparison_rerun_keeps_other_settings_and_other_cpus(tmp_path):
    """Re-running at one setting replaces that setting's rows on this CPU only."""
    from experiments.run.store import merge_setting_rows

    path = tmp_path / "official.csv"
    old = pd.DataFrame(
        {
            "input": ["3x224", "3x224", "3x32"],
            "threads": [1, 1, 1],
            "cpu_capability": ["AVX2", "AVX512", "AVX512"],
            "ratio": [1.1, 1.2, 1.3],
        }
    )
    old.to_csv(path, index=False)
    new = pd.DataFrame({"input": ["3x224"], "threads": [1], "cpu_capability": ["AVX512"]})
    merged = merge_setting_rows(path, new.assign(ratio=1.25), ["input", "threads"])
    assert sorted(merged["ratio"]) == [1.1, 1.25, 1.3]
    # rows written before the CPU was recorded are kept beside a re-run on a known CPU
    old.drop(columns="cpu_capability").to_csv(path, index=False)
    merged = merge_setting_rows(path, new.assign(ratio=1.25), ["input", "threads"])
    assert sorted(merged["ratio"]) == [1.1, 1.2, 1.25, 1.3]
    assert merged["cpu_capability"].isna().sum() == 3
    # the same instruction set on another maker's chip is another CPU: its rows stay
    old.assign(cpu_model="Intel(R) Xeon(R) Processor").to_csv(path, index=False)
    amd = new.assign(ratio=1.25, cpu_model="AMD EPYC")
    merged = merge_setting_rows(path, amd, ["input", "threads"])
    assert sorted(merged["ratio"]) == [1.1, 1.2, 1.25, 1.3]
    merged = merge_setting_rows(
        path, amd.assign(cpu_model="Intel(R) Xeon(R) Processor"), ["input", "threads"]
    )
    assert sorted(merged["ratio"]) == [1.1, 1.25, 1.3]


def test_bench_eval_fold_times_only_batchnorm_models_on_the_same_function():
    from experiments.tools import bench

    df = bench.bench_eval_fold(repeats=2, batch=4, seconds=0.01,
                               models=["deit_micro", "localvit_micro"])  # fmt: skip
    assert list(df["model"].unique()) == ["localvit_micro"] and len(df) == 2
    assert (df["max_logit_diff"] < 1e-4).all() and (df["folded_img_s"] > 0).all()
    assert (df["speedup"] == df["folded_img_s"] / df["as_trained_img_s"]).all()
