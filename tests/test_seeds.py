"""Seeds by precision: which claims get more seeds, how many, and a real grid that follows it.

Why: the stopping rule decides how much evidence every verdict rests on; it must stop on
decided or precise claims and at the cap, pair the seeds of compared cells, and a rerun must
not train anything twice.
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import TINY_BASE

from experiments.config.schema import SpecError
from experiments.config.spec import load_spec
from experiments.run import runner
from experiments.run.runner import claim_cells_first, run_grid, run_records
from experiments.run.seeds import SeedPolicy, next_seeds, open_claims


def verdicts(rows):
    """(cell, versus, verdict, precise, n_pairs) tuples -> a verdicts table."""
    return pd.DataFrame(rows, columns=["cell", "versus_cell", "verdict", "precise", "n_pairs"])


POLICY = SeedPolicy(batch=3, cap=9)


def test_only_open_claims_get_seeds():
    v = verdicts(
        [
            ("a", "base", "inconclusive", False, 3),  # open
            ("b", "base", "agrees", False, 3),  # decided
            ("c", "base", "inconclusive", True, 3),  # precise
            ("d", "base", "inconclusive", False, 9),  # at the cap
            ("e", "base", "not run", False, 0),  # nothing to decide yet
        ]
    )
    assert open_claims(v, POLICY)["cell"].tolist() == ["a"]
    have = {c: [0, 1, 2] for c in "abcde"} | {"base": [0, 1, 2], "d": list(range(9))}
    assert next_seeds(v, have, POLICY) == {"a": [3, 4, 5], "base": [3, 4, 5]}


def test_seeds_stay_paired_and_capped():
    v = verdicts([("a", "base", "inconclusive", False, 3), ("b", "base", "inconclusive", False, 3)])
    have = {"a": [0, 1, 2], "b": [0, 1, 2], "base": [0, 1, 2, 3, 4, 5, 6, 7]}
    plan = next_seeds(v, have, POLICY)
    # the baseline has 8 seeds: its partners catch up to 9 = min(8 + 3, cap), sharing seeds
    assert plan == {"a": list(range(3, 9)), "base": [8], "b": list(range(3, 9))}
    assert next_seeds(v, have, SeedPolicy(batch=3, cap=0)) == {}


def test_profile_seed_policy_is_validated(tmp_path):
    spec = tmp_path / "ablations" / "p" / "g.yaml"
    spec.parent.mkdir(parents=True)
    body = TINY_BASE.format(n_train=160, epochs=1) + "axes:\n  model.depth: [1, 2]\n"
    spec.write_text(body + "profiles:\n  quick:\n    seeds: {batch: 2, cap: 6}\n")
    assert load_spec(spec).seed_policy("quick") == SeedPolicy(batch=2, cap=6)
    assert load_spec(spec).seed_policy("smoke") == SeedPolicy()
    spec.write_text(body + "profiles:\n  quick:\n    seeds: {batch: 0}\n")
    with pytest.raises(SpecError, match=r"seeds.batch.*integer >= 1"):
        load_spec(spec)
    spec.write_text(body + "profiles:\n  quick:\n    seeds: {rounds: 2}\n")
    with pytest.raises(SpecError, match=r"seeds.rounds.*unknown key"):
        load_spec(spec)


GRID = (
    TINY_BASE
    + """axes:
  model.depth: [1, 2, 3]
seeds: 2
claims:
  - {{text: deeper is better, cell: "depth=2", versus: "depth=1", expect: better}}
profiles:
  quick:
    seeds: {{batch: 1, cap: 3}}
"""
)


@pytest.mark.slow  # over a minute on 2 cores: make test-full
def test_a_grid_adds_seeds_to_open_claims_only(workspace, monkeypatch):
    """The loop on real runs; tiny noise models decide nothing real, so the verdicts the loop
    reads are the real ones with the claim held open (the rule itself is tested above)."""
    real = runner.grid_verdicts
    calls = []

    def held_open(*args):
        v = real(*args)
        calls.append(v["n_pairs"].tolist())
        return v.assign(verdict="inconclusive", precise=False)

    monkeypatch.setattr(runner, "grid_verdicts", held_open)
    path = workspace / "ablations" / "p" / "g.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(GRID.format(n_train=160, epochs=1))
    spec = load_spec(path)
    order = [r["cell"] for r in claim_cells_first(spec, run_records(spec, "quick"))]
    assert (
        order[:4] == ["depth=1", "depth=2", "depth=1", "depth=2"] and order[4:] == ["depth=3"] * 2
    )
    run_grid(path, "quick", progress=False)
    rows = pd.read_csv(workspace / "results" / "p" / "g.csv")
    seeds = rows.groupby("cell")["seed"].apply(sorted).to_dict()
    assert seeds["depth=1"] == seeds["depth=2"] == [0, 1, 2]  # to the cap, pairwise
    assert calls == [[2], [3]]  # read after the first batch, and after the round
    assert seeds["depth=3"] == [0, 1]  # exploratory: the first batch only
    run_grid(path, "quick", progress=False)  # a rerun plans the same seeds and trains nothing
    again = pd.read_csv(workspace / "results" / "p" / "g.csv")
    assert len(again) == len(rows) == 8 and again["run_id"].is_unique


def test_claims_only_trains_the_claim_cells(workspace):
    """A claims campaign: the exploratory cell (depth=3) is not trained."""
    path = workspace / "ablations" / "p" / "g.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(GRID.format(n_train=96, epochs=1))
    run_grid(path, "quick", seeds=1, progress=False, claims_only=True)
    rows = pd.read_csv(workspace / "results" / "p" / "g.csv")
    assert sorted(rows["cell"]) == ["depth=1", "depth=2"] and set(rows["seed"]) == {0}


# two cells, rounds of 4 seeds up to 10
INTERRUPTED = GRID.replace("[1, 2, 3]", "[1, 2]").replace("batch: 1, cap: 3", "batch: 4, cap: 10")


def test_a_resumed_grid_finishes_the_round_it_was_killed_in(workspace):
    """The round to 6 seeds was killed after seed 4: at 5 seeds the claim reads decided, at the
    scheduled look (2 seeds) it is open. The resumed grid looks at 2 seeds, as an uninterrupted
    one did, and finishes the round (seed 5) instead of stopping at an n the schedule never
    stops at; its rows of the killed round are reused, not retrained."""
    path = workspace / "ablations" / "p" / "g.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(INTERRUPTED.format(n_train=96, epochs=1))
    spec = load_spec(path)
    diffs = [1.0, 3.0, 2.0, 2.0, 2.0]  # seeds 0-4: n=2 inconclusive, n=5 agrees (p ~ 0.003)
    rows = [
        {
            **r,
            "status": "ok",
            "test_top1": 80.0 + (diffs[r["seed"]] if r["cell"] == "depth=2" else 0),
        }
        for r in run_records(spec, "quick", list(range(5)))
    ]
    (workspace / "results" / "p").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(workspace / "results" / "p" / "g.csv", index=False)

    # without a plan the grid is replayed to its last complete look: 2 seeds, as planned
    replayed = runner.grid_verdicts(spec, "quick", None).iloc[0]
    assert (replayed["verdict"], replayed["n_pairs"]) == ("inconclusive", 2)
    at_look = runner.grid_verdicts(spec, "quick", None, {"depth=1": [0, 1], "depth=2": [0, 1]})
    assert (at_look.iloc[0]["verdict"], at_look.iloc[0]["n_pairs"]) == ("inconclusive", 2)

    job = runner.prepare(path, "quick", claims_only=True)
    assert job.added == 0  # the first batch is in the table
    assert runner.next_round(job, None, None)
    assert job.added == 2  # seed 5 of both cells; seeds 2-4 taken from the table
    planned = sorted((r["cell"], r["seed"]) for r in job.runs)
    assert planned == [(c, s) for c in ("depth=1", "depth=2") for s in range(6)]
