"""A run's identity is its resolved configuration: spellings of one network are one run."""

from __future__ import annotations

from experiments.run.identity import resolve, run_id

BASE = {
    "model": {"name": "deit_micro", "embed_dim": 32, "depth": 2, "heads": 2},
    "data": {"name": "synthetic", "val_size": 64},
    "train": {"epochs": 1},
}


def _with(section: str, **over) -> dict:
    cfg = {k: dict(v) for k, v in BASE.items()}
    cfg[section].update(over)
    return cfg


def test_defaults_written_or_not_are_one_run():
    assert run_id(BASE, 0) == run_id(_with("model", patch_size=4), 0)  # deit_micro's default
    assert run_id(BASE, 0) == run_id(_with("train", lr=2e-3, warmup_epochs=0.5), 0)
    assert run_id(BASE, 0) == run_id(_with("data", batch_size=128), 0)


def test_int_and_float_spellings_are_one_run():
    a = _with("train", warmup_epochs=0, lr=1)
    b = _with("train", warmup_epochs=0.0, lr=1.0)
    assert run_id(a, 0) == run_id(b, 0)


def test_what_cannot_change_a_number_is_not_identity():
    assert run_id(BASE, 0) == run_id(_with("train", bench_seconds=5.0), 0)
    assert run_id(BASE, 0) == run_id(_with("data", eval_batch_size=7, root="elsewhere"), 0)


def test_what_changes_the_run_changes_the_id():
    ids = {
        run_id(BASE, 0),
        run_id(BASE, 1),
        run_id(_with("model", depth=3), 0),
        run_id(_with("train", lr=1e-3), 0),
        run_id(_with("data", val_size=65), 0),
    }
    assert len(ids) == 5


def test_the_precision_is_identity_as_resolved_not_as_spelled(monkeypatch):
    """fp32 spelled "auto" or "32-true" on a CPU is one run; bf16 is another; "auto" where a
    GPU trains is bf16, so it cannot pass for a committed CPU fp32 run."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fp32, on_cpu = run_id(BASE, 0), run_id(_with("train", accelerator="cpu"), 0)
    assert fp32 == run_id(_with("train", precision="32-true"), 0)
    assert fp32 != run_id(_with("train", precision="bf16-mixed"), 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert run_id(BASE, 0) != fp32
    assert run_id(BASE, 0) == run_id(_with("train", precision="bf16-mixed"), 0)
    assert run_id(_with("train", accelerator="cpu"), 0) == on_cpu  # fp32 there too


def test_model_part_is_what_the_model_reports():
    resolved = resolve(BASE)["model"]
    assert resolved["arch"] == "LocalViT" and resolved["depth"] == 2
    assert resolved["in_chans"] == 1 and resolved["num_classes"] == 10  # from the data


def test_knobs_added_later_keep_old_ids():
    """A committed run's id must not move when a knob is added at its neutral value."""
    from experiments.run.identity import NEUTRAL

    assert run_id(BASE, 0) == run_id(_with("train", steps=None, precise_bn=0, val_every=1), 0)
    assert run_id(BASE, 0) == run_id(_with("train", collapse_gap=10.0), 0)  # flags only
    assert run_id(BASE, 0) != run_id(_with("train", val_every=3), 0)
    assert run_id(BASE, 0) != run_id(_with("train", steps=40), 0)
    assert run_id(BASE, 0) != run_id(_with("train", precise_bn=4), 0)
    assert set(NEUTRAL["train"]) == {"steps", "precise_bn", "val_every", "budget_scale"}
    # a scaled budget is the budget written out, not another run
    assert run_id(_with("train", budget_scale=1.0), 0) == run_id(BASE, 0)
    assert run_id(_with("train", budget_scale=2), 0) == run_id(_with("train", epochs=2), 0)
    assert run_id(_with("train", budget_scale=2), 0) != run_id(BASE, 0)


def test_committed_ids_still_resolve():
    """The current specs give the committed rows their ids: a fresh clone retrains nothing."""
    from pathlib import Path

    import pandas as pd

    from experiments.config.spec import load_spec
    from experiments.run.runner import run_records

    root = Path(__file__).resolve().parents[1]
    for grid in ("localvit/layers", "casvit/mixer", "efficientmod/mbconv", "scalablevit/local"):
        table = pd.read_csv(root / "results" / f"{grid}.pilot.csv", dtype={"run_id": str})
        spec = load_spec(root / "ablations" / f"{grid}.yaml", build_models=False)
        ids = {(r["cell"], r["seed"]): r["run_id"] for r in run_records(spec, "pilot", [0, 1, 2])}
        committed = {
            (c, int(s)): r
            for c, s, r in zip(table["cell"], table["seed"], table["run_id"], strict=True)
        }
        assert committed == ids, grid
