"""The test-set noise study: its variance law, its pairing by seed and its checkpoint replay."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.tools.test_set_noise import pair_summary, variance_law


def paired_differences(seeds: int, images: int, sd_dist: float, flip: float, rng):
    """Per seed a network-level shift u ~ N(0, sd_dist) of the difference, and per image a
    difference in {-1, 0, 1}: +1 with probability flip + u/2, -1 with flip - u/2. Then
    var(mean of N images) = sd_dist**2 + (2 * flip - E[u**2]) / N, with E[u**2] = sd_dist**2."""
    u = rng.normal(0, sd_dist, size=(seeds, 1))
    r = rng.random((seeds, images))
    return np.where(r < flip + u / 2, 1, np.where(r > 1 - (flip - u / 2), -1, 0)).astype(np.int8)


def test_variance_law_separates_sampling_from_training_noise():
    rng = np.random.default_rng(0)
    d = paired_differences(400, 20000, sd_dist=0.004, flip=0.04, rng=rng)
    s2, c, points = variance_law(d, rng, draws=20)
    assert c == pytest.approx(0.08, rel=0.15)
    assert s2**0.5 == pytest.approx(0.004, rel=0.25)
    assert list(points) == [1000, 2000, 5000, 10000, 20000]
    # no training noise: the fitted distribution part is (close to) nothing
    d0 = paired_differences(400, 20000, sd_dist=0.0, flip=0.04, rng=rng)
    s2_0, c0, _ = variance_law(d0, rng, draws=20)
    assert abs(s2_0) < 0.2 * 0.004**2 and c0 == pytest.approx(0.08, rel=0.15)


def test_pair_summary_pairs_by_seed_and_projects_the_full_pool():
    rng = np.random.default_rng(1)
    n, test, held = 40, 10000, 20000
    d = paired_differences(n, test + held, sd_dist=0.002, flip=0.03, rng=rng)
    base = rng.random((n, test + held)) < 0.85  # the versus cell's hits; the cell's = base + d
    hits = np.clip(base.astype(np.int8) + d, 0, 1).astype(bool)
    d = hits.astype(np.int8) - base  # what is left of d after clipping
    records, rows = {}, []
    for s in range(n):
        for cell, h in (("a", hits[s]), ("b", base[s])):
            rid = f"{cell}{s}"
            records[rid] = {"test": h[:test], "holdout": h[test:]}
            rows.append({"run_id": rid, "cell": cell, "seed": s})
    rows.append({"run_id": "lonely", "cell": "a", "seed": 99})  # no partner: not used
    out = pair_summary(records, pd.DataFrame(rows), "a", "b", share=0.05, rng=rng)
    assert out["seeds"] == n and out["holdout_images"] == held
    assert out["delta_test"] == pytest.approx(100 * d[:, :test].mean())
    assert out["sd_test"] == pytest.approx(100 * d[:, :test].mean(1).std(ddof=1))
    # 54,000 unused images more cut the variance; evaluating them costs 5.4 test passes
    assert out["seeds_ratio_64k"] < 0.5 and out["eval_cost_64k"] == pytest.approx(1.27)
    assert out["compute_ratio_64k"] == pytest.approx(out["seeds_ratio_64k"] * 1.27)


def test_correct_replays_the_checkpointed_network(tmp_path):
    import torch

    from experiments.run.data import Split
    from experiments.run.lit import ClassificationModule
    from experiments.tools.test_set_noise import correct

    torch.manual_seed(0)
    kwargs = {"dims": [16, 16, 24, 32], "depths": [1, 1, 1, 1]}
    module = ClassificationModule("casvit_micro", kwargs, num_classes=10, in_chans=1, img_size=28)
    module.eval()
    x, y = torch.randn(40, 1, 28, 28), torch.arange(40) % 10
    for m in module.modules():  # trained-looking BN statistics: the replay must load them too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        expected = (module.model(x).argmax(1) == y).numpy()
    path = tmp_path / "last.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    got = correct(path, {"test": Split(x, y), "holdout": Split(x[:8], y[:8])}, batch=16)
    assert np.array_equal(got["test"], expected) and np.array_equal(got["holdout"], expected[:8])
    # precise BN over the training split changes the statistics, hence (here) the hits
    splits = {"train": Split(x * 3 + 1, y), "test": Split(x, y)}
    again = correct(path, splits, batch=16, bn_batches=2, bn_batch=16)
    assert set(again) == {"test"} and not np.array_equal(again["test"], expected)


def test_precise_bn_uses_the_asked_training_batches():
    import torch

    from experiments.run.data import Split
    from experiments.tools.test_set_noise import recompute_bn

    x = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1)
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(1)).eval()
    recompute_bn(net, Split(x, torch.zeros(20, dtype=torch.long)), batches=2, batch=4, seed=3)
    chosen = x[torch.randperm(20, generator=torch.Generator().manual_seed(3))[:8]]
    assert not net.training
    assert net[0].running_mean.item() == pytest.approx(chosen.mean().item())
    assert net[0].running_mean.item() != pytest.approx(x.mean().item())


def test_a_shared_row_is_replayed_from_the_grid_that_trained_it(tmp_path, monkeypatch):
    """casvit/local copies some runs from casvit/phi; its own directory may hold an
    interrupted training of such a run (a stale checkpoint), which must not be read."""
    import pandas as pd

    from experiments.tools.test_set_noise import claim_runs

    monkeypatch.setenv("ABLATE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ABLATE_RUNS", str(tmp_path / "runs"))
    (tmp_path / "results" / "casvit").mkdir(parents=True)
    rows = [
        {"run_id": "own", "cell": "local=true", "shared_from": None},
        {"run_id": "copied", "cell": "local=true", "shared_from": "casvit/phi"},
        {"run_id": "gone", "cell": "local=false", "shared_from": None},
    ]
    table = pd.DataFrame(rows).assign(status="ok", profile="quick")
    table.to_csv(tmp_path / "results" / "casvit" / "local.csv", index=False)
    for grid, rid in [
        ("casvit/local", "own"),
        ("casvit/local", "copied"),
        ("casvit/phi", "copied"),
    ]:
        (tmp_path / "runs" / grid / "quick" / rid).mkdir(parents=True)
        (tmp_path / "runs" / grid / "quick" / rid / "last.ckpt").write_text(grid)
    found, pairs = claim_runs("ablations/casvit/local.yaml", "quick")
    assert pairs == [("local=true", "local=false")]
    where = dict(zip(found.run_id, found.ckpt, strict=True))
    assert set(where) == {"own", "copied"}  # "gone" has no checkpoint left
    assert "casvit/phi" in where["copied"] and "casvit/local" in where["own"]
