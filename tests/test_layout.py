"""The workers x threads chooser: candidate layouts, the tie rule, and one real measurement."""

from __future__ import annotations

import pytest

from experiments.run.layout import Layout, candidates, measure, pick


def test_candidates_split_the_cores_and_respect_the_runs():
    assert candidates(2, 18) == [(1, 2), (2, 1)]
    assert candidates(8, 3) == [(1, 8), (2, 4)]
    assert candidates(4, 1) == [(1, 4)]


def test_pick_prefers_fewer_workers_within_the_tie():
    assert pick([Layout(1, 2, 100.0), Layout(2, 1, 150.0)]).workers == 2
    assert pick([Layout(1, 2, 100.0), Layout(2, 1, 104.0)]).workers == 1


@pytest.mark.slow
def test_measure_runs_the_probes_concurrently():
    layouts = measure({"name": "deit_micro", "depth": 1, "embed_dim": 32, "heads": 2},
                      batch=16, size=16, chans=1, classes=10, cores=2, runs=4, seconds=0.3)  # fmt: skip
    assert [(x.workers, x.threads) for x in layouts] == [(1, 2), (2, 1)]
    assert all(x.img_s > 0 for x in layouts)
