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


def test_the_probes_train_in_the_precision_the_runs_would(monkeypatch):
    """A grid whose runs train in bf16 is laid out by probes that train in bf16 too: the
    precision reaches every probe process, and a probe honours it (autocast on the device)."""
    import torch

    from experiments.run import layout

    seen = []

    class FakeProbe:
        def __init__(self, argv, **kwargs):
            seen.append(argv)

        def communicate(self):
            return "100.0\n", ""

    monkeypatch.setattr(layout.subprocess, "Popen", FakeProbe)
    measure({"name": "deit_micro"}, 8, 16, 1, 10, cores=2, runs=4, precision="bf16-mixed")
    assert len(seen) == 3 and all(a[a.index("--precision") + 1] == "bf16-mixed" for a in seen)

    casts = []
    real = torch.autocast.__init__

    def spy(self, device_type, *args, **kwargs):
        casts.append((device_type, kwargs.get("enabled", True)))
        real(self, device_type, *args, **kwargs)

    monkeypatch.setattr(torch.autocast, "__init__", spy)
    model = {"name": "deit_micro", "depth": 1, "embed_dim": 32, "heads": 2}
    assert layout.probe_img_s(model, 4, 16, 1, 10, 0.01, precision="bf16-mixed") > 0
    assert ("cpu", True) in casts  # on a CPU the bf16 step runs under CPU autocast
