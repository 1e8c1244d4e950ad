"""The model benchmark and the helpers of the official-code comparisons."""

import pytest

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
