"""Training end to end: on an easy task the loss falls and accuracy ends far above chance."""

from __future__ import annotations

import math

import pytest

from experiments.run.lit import cosine_with_warmup
from experiments.run.train import train_run, validation_interval

MICRO = {"name": "deit_micro", "embed_dim": 48, "depth": 2, "heads": 2, "patch_size": 4}


@pytest.mark.slow  # over a minute on 2 cores: make test-full
def test_learns_synthetic_task(tmp_path):
    data = {
        "name": "synthetic",
        "synthetic_train": 2000,
        "val_size": 200,
        "batch_size": 32,
        "crop_padding": 0,
        "flip": False,
    }
    result = train_run(
        MICRO,
        data,
        {"epochs": 3, "lr": 3e-3, "bench_seconds": 0.05},
        seed=0,
        workdir=tmp_path / "run",
        progress=False,
    )
    assert result["status"] == "ok"
    losses = [e["train_loss"] for e in result["epochs"]]
    assert losses[-1] < losses[0]
    assert result["test_top1"] > 60  # chance is 10 %
    assert result["params"] > 0 and result["macs"] > 0
    assert result["train_img_s"] > 0 and result["infer_img_s"] > 0 and result["peak_mem_mb"] > 0
    assert (tmp_path / "run" / "last.ckpt").exists()


def test_nan_loss_is_diverged(tmp_path):
    data = {"name": "synthetic", "synthetic_train": 300, "val_size": 50, "batch_size": 64}
    train = {"epochs": 2, "inject_nan_at_step": 5, "bench_seconds": 0.05}
    result = train_run(MICRO, data, train, seed=0, progress=False)
    assert result["status"] == "diverged" and result["diverged_epoch"] == 1


def test_cosine_schedule_shape():
    f = cosine_with_warmup(total_steps=100, warmup_steps=10, min_ratio=0.01)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.01)


def test_no_weight_decay_on_norms_biases_embeddings():
    from experiments.run.lit import ClassificationModule

    module = ClassificationModule(
        "deit_micro", {"depth": 1}, num_classes=10, in_chans=1, img_size=28
    )

    class T:  # the two trainer fields configure_optimizers reads
        estimated_stepping_batches, max_epochs = 10, 1

    module.trainer = T()  # type: ignore[assignment]
    opt = module.configure_optimizers()["optimizer"]
    names = {id(p): n for n, p in module.model.named_parameters()}
    no_decay = {
        names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]
    }
    assert {"cls_token", "pos_embed"} <= no_decay
    assert all(
        n.endswith("bias") or "norm" in n or n in ("cls_token", "pos_embed") for n in no_decay
    )
    assert "blocks.0.attn.qkv.weight" not in no_decay
    assert opt.defaults["fused"] is True  # the fused AdamW kernel on CPU


def test_fused_adamw_only_where_the_device_has_it():
    import torch

    from experiments.run.recipe import fused_adamw_ok

    assert fused_adamw_ok(torch.nn.Linear(2, 2))
    assert not fused_adamw_ok(torch.nn.Linear(2, 2, device="meta"))


BN_MODEL = {"name": "casvit_micro"}  # BatchNorm throughout
SMALL = {"name": "synthetic", "synthetic_train": 96, "val_size": 32, "batch_size": 32}


def test_budget_in_steps_sets_the_epochs(tmp_path):
    """96 images at batch 32 are 3 steps an epoch: 7 steps are 3 epochs, the last partial."""
    result = train_run(MICRO, SMALL, {"steps": 7, "bench_seconds": 0.01}, progress=False)
    assert result["status"] == "ok" and result["epochs_run"] == 3


@pytest.mark.slow  # three trainings of a BatchNorm model: make test-full
def test_precise_bn_changes_evaluation_not_training():
    """Same training curve with and without precise BN; the evaluation differs (BN statistics
    recomputed); and a network without BatchNorm is untouched by it."""
    train = {"epochs": 2, "bench_seconds": 0.01, "collapse_gap": 100.0}
    plain = train_run(BN_MODEL, SMALL, train, progress=False, measure_cost=False)
    precise = train_run(
        BN_MODEL, SMALL, {**train, "precise_bn": 2}, progress=False, measure_cost=False
    )
    assert [e["train_loss"] for e in plain["epochs"]] == [
        e["train_loss"] for e in precise["epochs"]
    ]
    assert [e["val_loss"] for e in plain["epochs"]] != [e["val_loss"] for e in precise["epochs"]]
    no_bn = [
        train_run(MICRO, SMALL, {**train, "precise_bn": n}, progress=False, measure_cost=False)
        for n in (0, 2)
    ]
    assert no_bn[0]["epochs"] == no_bn[1]["epochs"]


def test_collapsed_evaluation_is_flagged():
    result = train_run(
        MICRO, SMALL, {"epochs": 1, "collapse_gap": -100.0, "bench_seconds": 0.01}, progress=False
    )
    assert result["status"] == "collapsed" and "below train top-1" in result["error"]


def test_validation_every_few_epochs_and_always_the_last():
    """val_every=2 over 3 epochs (7 steps of 3 a epoch): 3 has no divisor 2, so every epoch is
    validated; over 4 epochs (12 steps) epochs 2 and 4 are, and the others carry no stale
    validation numbers; the partial last epoch of a step budget is validated."""
    train = {"bench_seconds": 0.01, "val_every": 2}
    three = train_run(MICRO, SMALL, {**train, "steps": 7}, progress=False, measure_cost=False)
    assert [e["val_top1"] is not None for e in three["epochs"]] == [True, True, True]
    four = train_run(MICRO, SMALL, {**train, "steps": 12}, progress=False, measure_cost=False)
    assert [e["val_top1"] is not None for e in four["epochs"]] == [False, True, False, True]
    assert four["val_top1"] == four["epochs"][-1]["val_top1"]
    assert validation_interval(12, 3) == 3 and validation_interval(10, 3) == 2
    assert validation_interval(7, 3) == 1 and validation_interval(2, 5) == 2


def test_bf16_autocast_trains_with_fused_adamw_and_clipping():
    """The precision option on a CPU: bf16 autocast with the fused AdamW and gradient clipping
    of every profile (Lightning alone refuses that pair), finishing with finite numbers."""
    train = {"steps": 4, "precision": "bf16-mixed", "grad_clip": 0.5, "bench_seconds": 0.01}
    result = train_run(MICRO, SMALL, train, progress=False)
    assert result["status"] == "ok", result["error"]
    assert math.isfinite(result["test_loss"]) and math.isfinite(result["epochs"][-1]["train_loss"])


def test_bf16_on_a_cpu_takes_the_math_attention_path():
    """Inside ``cpu_bf16_kernels`` bf16 attention avoids the fused CPU kernel, slow in bf16."""
    import torch
    import torch.nn.functional as F
    from torch.profiler import profile

    from experiments.run.precision import cpu_bf16_kernels

    q = torch.randn(2, 2, 16, 8, dtype=torch.bfloat16, requires_grad=True)

    def ops(enabled: bool) -> set[str]:
        with cpu_bf16_kernels(enabled), profile() as prof:
            F.scaled_dot_product_attention(q, q, q).sum().backward()
        return {e.key for e in prof.key_averages()}

    assert any("flash" in name for name in ops(False))
    assert not any("flash" in name for name in ops(True))


def test_the_phase_clock_splits_a_run_into_training_validation_and_test():
    """``bench --only overhead`` splits a run's time with PhaseClock: every phase is timed once
    it ran, and together they stay inside the run's wall time."""
    import time

    from experiments.run.cost import PhaseClock

    clock = PhaseClock()
    start = time.perf_counter()
    result = train_run(MICRO, SMALL, {"steps": 7}, progress=False, callbacks=[clock])
    wall = time.perf_counter() - start
    assert result["status"] == "ok"
    assert set(clock.seconds) == {"train_batches", "validation", "test"}
    assert all(s > 0 for s in clock.seconds.values())
    assert sum(clock.seconds.values()) < min(wall, result["wall_s"])


def test_skipping_localvits_unreachable_ffn_trains_bit_for_bit_as_computing_it(
    tmp_path, monkeypatch
):
    """``LocalViT.forward`` leaves out the last block's FFN (it cannot reach the class-token
    head). With clipping active every step, a run trains exactly as when that FFN is computed
    and its zero gradients back-propagated, as the official model does: the same curves and
    test metrics, and the same weights, the skipped FFN's included (the zero gradients
    ``on_after_backward`` gives it decay it as the computed zeros did)."""
    import torch

    from modules.localvit import LocalViT

    model = {"name": "localvit_micro", "embed_dim": 32, "depth": 2, "heads": 2}
    train = {"steps": 6, "grad_clip": 1e-3, "bench_seconds": 0.01, "collapse_gap": 100.0}

    def run(name: str) -> tuple[dict, dict]:
        out = train_run(model, SMALL, train, workdir=tmp_path / name, progress=False)
        state = torch.load(tmp_path / name / "last.ckpt", weights_only=True)["state_dict"]
        return out, state

    def computing_the_dead_ffn(self, x):
        tokens, hw = self.embed(x)
        for block in self.blocks[:-1]:
            tokens = block(tokens, hw)
        last = self.blocks[-1]
        # the FFN runs (on the block's input image tokens) and passes the class token through
        cls = last.ffn(torch.cat([last.class_token(tokens), tokens[:, 1:]], dim=1), hw)[:, :1]
        return self.forward_head(self.norm(cls))

    skipped, skipped_state = run("skipped")
    with monkeypatch.context() as m:
        m.setattr(LocalViT, "forward", computing_the_dead_ffn)
        m.setattr(LocalViT, "unreached_parameters", lambda self: [])
        full, full_state = run("full")
    for key in ("epochs", "test_top1", "test_loss", "best_val_top1"):
        assert skipped[key] == full[key], key
    dead = "model.blocks.1.ffn."
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    for key, value in full_state.items():
        if key.startswith(dead) and key.endswith(statistics):
            continue  # the skipped FFN's BatchNorm statistics: never computed, never used
        assert torch.equal(skipped_state[key], value), key
    assert any(k.startswith(dead + "fc1") for k in full_state)
