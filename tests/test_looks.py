"""Claims read each grid at its last complete look, wherever the tables are read.

Why: a round of seeds in progress (or killed) leaves part of its runs in the tables; a verdict
read over them is taken at an n the seed schedule never stops at, and changes with the moment
the tables are read. The report, the notebooks and a running campaign's Holm levels must all
read the same rows: each grid's claim cells at the seeds of its last finished round.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from conftest import TINY_BASE

from experiments.analysis import claims as cl
from experiments.analysis import looks, report
from experiments.analysis import stats as an
from experiments.config.spec import load_spec
from experiments.run import runner
from experiments.run.runner import run_records

SPEC = """axes:
  model.depth: [1, 2]
seeds: SEEDS
claims:
  - {text: TEXT, cell: "depth=2", versus: "depth=1", expect: better}
profiles:
  quick:
    seeds: {batch: 4, cap: 10}
"""
# grid h: first look at 2 seeds (inconclusive), a round to 6 killed after seed 4; read over its
# 5 seeds the claim would agree (p ~ 0.003). Grid g: 3 seeds, raw p ~ 0.046, one round at most.
H_DIFFS = [1.0, 3.0, 2.0, 2.0, 2.0]
G_DIFFS = [1.0, 1.5, 2.2]


def _write(workspace, name: str, seeds: int, text: str, diffs: list[float]):
    path = workspace / "ablations" / "p" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = SPEC.replace("SEEDS", str(seeds)).replace("TEXT", text)
    path.write_text(TINY_BASE.format(n_train=96, epochs=1) + body)
    spec = load_spec(path, build_models=False)
    rows = [
        {
            **r,
            "status": "ok",
            "wall_s": 10.0,
            "threads": 1,
            "test_top1": 80.0 + (diffs[r["seed"]] if r["cell"] == "depth=2" else 0),
        }
        for r in run_records(spec, "quick", list(range(len(diffs))))
    ]
    (workspace / "results" / "p").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(workspace / "results" / "p" / f"{name}.csv", index=False)
    return load_spec(path)


@pytest.fixture
def paper(workspace):
    """Paper p: grid h with a round in progress, grid g decided by its first look or not."""
    h = _write(workspace, "h", 2, "h helps", H_DIFFS)
    g = _write(workspace, "g", 3, "g helps", G_DIFFS)
    return workspace, g, h


def _verdicts(workspace, rows):
    claims = an.load_claims(workspace / "ablations")
    return cl.check_claims(rows, claims, looks.NO_PAPER).set_index("grid")


def test_a_round_in_progress_is_not_read(paper):
    workspace, _, _ = paper
    every_row = an.load_results(workspace / "results", profile="quick")
    claims = an.load_claims(workspace / "ablations")
    at_looks = looks.at_last_looks(every_row, claims, workspace / "ablations")
    h = at_looks[at_looks["grid"] == "p/h"]
    assert sorted(set(h["seed"])) == [0, 1]
    assert len(looks.beyond_last_looks(every_row, at_looks)) == 6  # seeds 2-4 of both cells
    everything, at_look = _verdicts(workspace, every_row), _verdicts(workspace, at_looks)
    assert (everything.loc["p/h", "verdict"], everything.loc["p/h", "n_pairs"]) == ("agrees", 5)
    assert (at_look.loc["p/h", "verdict"], at_look.loc["p/h", "n_pairs"]) == ("inconclusive", 2)


def test_a_finished_round_is_read(paper):
    workspace, _, h = paper
    table = workspace / "results" / "p" / "h.csv"
    rows = pd.read_csv(table)
    seed5 = [
        {
            **r,
            "status": "ok",
            "wall_s": 10.0,
            "threads": 1,
            "test_top1": 80.0 + (2.0 if r["cell"] == "depth=2" else 0),
        }
        for r in run_records(h, "quick", [5])
    ]
    pd.concat([rows, pd.DataFrame(seed5)]).to_csv(table, index=False)
    every_row = an.load_results(workspace / "results", profile="quick")
    claims = an.load_claims(workspace / "ablations")
    at_looks = looks.at_last_looks(every_row, claims, workspace / "ablations")
    assert looks.beyond_last_looks(every_row, at_looks).empty
    assert _verdicts(workspace, at_looks).loc["p/h", "n_pairs"] == 6


def test_a_peer_grids_round_in_progress_does_not_move_the_holm_level(paper):
    """Holm across the paper: read whole, h's 5 seeds give it a tiny p, so g is tested at the
    full 5% and agrees; at h's last complete look (2 seeds) g gets 2.5% and stays open. The
    campaign planning g's next round must see the latter."""
    workspace, g, _ = paper
    planned = {"depth=1": [0, 1, 2], "depth=2": [0, 1, 2]}
    verdict = runner.grid_verdicts(g, "quick", None, planned).iloc[0]
    assert verdict["n_pairs"] == 3 and 0.025 < verdict["p"] < 0.05
    assert verdict["verdict"] == "inconclusive"
    every_row = an.load_results(workspace / "results", profile="quick")
    assert _verdicts(workspace, every_row).loc["p/g", "verdict"] == "agrees"  # the old reading


def test_the_report_reads_the_last_complete_look_and_lists_the_rest(paper):
    workspace, _, _ = paper
    path = report.build_report(
        workspace / "results", profile="quick", figures=False, ablations=workspace / "ablations"
    )
    text = path.read_text()
    claims = text.split("## Did each paper's claim hold here?")[1].split("\n## ")[0]
    h_row = next(line for line in claims.splitlines() if "h helps" in line)
    assert "inconclusive" in h_row and "agrees" not in h_row
    beyond = text.split("## Runs beyond the last complete look")[1].split("\n## ")[0]
    for cell in ("depth=1", "depth=2"):
        assert re.search(rf"\| p/h +\| quick +\| {cell} +\| 3 +\| 2, 3, 4 +\|", beyond)
    assert "p/g" not in beyond


def test_the_committed_tables_are_read_only_at_the_schedules_looks():
    """CAS-ViT's local-perception table cut after any of its last rounds' runs (rows are
    appended as runs finish), the paper's other tables whole: the claim is read at a look of
    the schedule (3, 9, ..., 45, 48), never at the n of a partial round."""
    from conftest import ROOT

    ablations = ROOT / "ablations"
    every_row = an.load_results(ROOT / "results" / "casvit", profile="quick")
    claims = an.load_claims(ablations)
    claims = claims[claims["paper"] == "casvit"]  # the Holm family
    local = every_row[every_row["grid"] == "casvit/local"]
    others = every_row[every_row["grid"] != "casvit/local"]
    schedule = {3, *range(9, 48, 6), 48}
    seen = set()
    for cut in (len(local) - k for k in (0, 1, 3, 7, 11, 14, 20)):
        rows = pd.concat([others, local.iloc[:cut]])
        at = looks.at_last_looks(rows, claims, ablations)
        verdicts = cl.check_claims(at, claims, looks.NO_PAPER).set_index("grid")
        n = int(verdicts.loc["casvit/local", "n_pairs"])
        assert n in schedule, (cut, n)
        seen.add(n)
    assert len(seen) > 1  # the cuts fall in different rounds
