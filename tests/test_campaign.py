"""The campaign driver: first batch for every grid, then one seed round per grid per pass."""

from __future__ import annotations

import pandas as pd
import pytest
from test_seeds import GRID

from experiments.config.spec import SpecError
from experiments.run import campaign, runner


def _paper(workspace, names=("a", "b")):
    folder = workspace / "ablations" / "p"
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{name}.yaml").write_text(GRID.format(n_train=96, epochs=1))
    return workspace / "ablations"


def test_rounds_go_breadth_first_and_stop_when_nothing_is_trained(workspace, monkeypatch):
    """A fake grid trains one more run per round for its first two rounds, then nothing."""
    calls, rounds = [], {"p/a": 0, "p/b": 0}

    def fake_run_grid(path, profile, *, claims_only, max_rounds, results_dir, **_):
        grid = f"p/{path.stem}"
        calls.append((grid, max_rounds))
        assert claims_only
        if max_rounds == 1 and rounds[grid] < 2:
            rounds[grid] += 1
        table = workspace / "results" / f"{grid}.csv"
        pd.DataFrame({"run_id": [f"{grid}-{i}" for i in range(2 + rounds[grid])]}).to_csv(
            table, index=False
        )

    (workspace / "results" / "p").mkdir(parents=True)
    monkeypatch.setattr(campaign, "run_grid", fake_run_grid)
    passes = campaign.run_campaign("p", "quick", ablations_dir=_paper(workspace))
    assert passes == 2
    first, *rest = [calls[i : i + 2] for i in range(0, len(calls), 2)]
    assert first == [("p/a", 0), ("p/b", 0)]  # the first batch of every grid, no rounds
    assert rest == [[("p/a", 1), ("p/b", 1)]] * 3  # two passes that trained, one that did not


def test_an_unknown_paper_names_the_allowed_ones(workspace):
    with pytest.raises(SpecError, match="allowed: p"):
        campaign.run_campaign("nope", ablations_dir=_paper(workspace))


@pytest.mark.slow  # trains 8 tiny runs: make test-full
def test_max_rounds_limits_the_rounds_that_train(workspace, monkeypatch):
    real = runner.grid_verdicts
    monkeypatch.setattr(
        runner,
        "grid_verdicts",
        lambda *a: real(*a).assign(verdict="inconclusive", precise=False),
    )
    path = _paper(workspace, ("a",)) / "p" / "a.yaml"
    runner.run_grid(path, "quick", progress=False, claims_only=True, max_rounds=0)
    seeds = lambda: pd.read_csv(workspace / "results" / "p" / "a.csv").groupby("cell")["seed"]  # noqa: E731
    assert seeds().max().tolist() == [1, 1]  # the spec's 2 seeds, no round
    runner.run_grid(path, "quick", progress=False, claims_only=True, max_rounds=1)
    assert seeds().max().tolist() == [2, 2]  # one round of batch 1, cap 3
    runner.run_grid(path, "quick", progress=False, claims_only=True, max_rounds=1)
    assert seeds().max().tolist() == [2, 2] and seeds().size().tolist() == [3, 3]  # at the cap
