"""The model benchmark: interleaved variant/baseline ratios, variant-only toggles recorded."""

from experiments.bench import bench_models

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
