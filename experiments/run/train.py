"""Train and test one configuration: the unit of work of the CLI, the grid runner and sweeps.

``train_run`` builds the data module and the Lightning module, trains with a checkpoint every
epoch in ``workdir`` (resumed if one is there), tests the final weights on the test split and
returns one flat result: metrics, cost and the per-epoch curves. A NaN loss ends the run as
``diverged``; any other exception propagates to the caller, which stores it as ``failed``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch

from experiments.run.cost import (
    PeakMemory,
    TrainThroughput,
    count_macs,
    count_params,
    inference_throughput,
    wall_clock,
)
from experiments.run.data import DataConfig
from experiments.run.datamodule import ImageDataModule
from experiments.run.lit import ClassificationModule, DivergedError
from experiments.run.precision import cpu_bf16_kernels, on_gpu, resolve_precision
from experiments.run.recipe import TrainConfig
from experiments.run.resume import plan_resume, run_threads

CHECKPOINT = "last.ckpt"
CURVES = "epochs.jsonl"


def epoch_metrics(trainer: L.Trainer) -> dict[str, float]:
    """This epoch's logged metrics; the validation ones only if validation ran this epoch
    (Lightning keeps the last validation's values in ``callback_metrics`` between checks)."""
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.current_epoch not in getattr(trainer.lightning_module, "validated_epochs", ()):
        m = {k: v for k, v in m.items() if not k.startswith("val_")}
    return m


class StepBudget(L.Callback):
    """Ends training at ``steps`` optimizer steps as an early stop does, so the last (partial)
    epoch is validated like every full one (a bare ``max_steps`` skips that validation)."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.steps:
            trainer.should_stop = True


def validation_interval(epochs: int, every: int) -> int:
    """The largest divisor of ``epochs`` that is at most ``every``: validations then fall
    every that many epochs and always on the last one."""
    return max(d for d in range(1, min(every, epochs) + 1) if epochs % d == 0)


class EpochCurves(L.Callback):
    """Collects each epoch's train/val loss and accuracy and the learning rate.

    The rows are part of the checkpoint (``state_dict``), which is written after the row of
    its epoch, so a resumed run has exactly the curve of the uninterrupted one. They are also
    mirrored to ``epochs.jsonl`` beside the checkpoint for a reader watching a run.
    """

    def __init__(self, path: Path | None):
        self.path, self.rows = path, []

    def state_dict(self) -> dict:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state.get("rows", []))
        self._rewrite()

    def _rewrite(self) -> None:
        if self.path:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        m = epoch_metrics(trainer)
        row = {
            "epoch": trainer.current_epoch,
            "train_loss": m.get("train_loss_epoch", m.get("train_loss")),
            "train_top1": 100 * m["train_top1"] if "train_top1" in m else None,
            "val_loss": m.get("val_loss"),
            "val_top1": 100 * m["val_top1"] if "val_top1" in m else None,
            "lr": m.get("lr"),
        }
        self.rows.append(row)
        self._rewrite()


class EpochLines(L.Callback):
    """One line per epoch (epoch, loss, val top-1, ETA) where no progress bar is drawn:
    stdout is not a terminal (a log file), or the bar is off."""

    def __init__(self, label: str = ""):
        self.label, self.started, self.first_epoch = label, None, 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.started, self.first_epoch = time.perf_counter(), trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        m = epoch_metrics(trainer)
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        done = epoch - self.first_epoch
        per_epoch = (time.perf_counter() - self.started) / max(done, 1)
        val = m.get("val_top1")
        print(
            f"{self.label}epoch {epoch}/{total}"
            f"  loss {m.get('train_loss_epoch', float('nan')):.4f}"
            + (f"  val top-1 {100 * val:.2f}" if val is not None else "")
            + f"  ETA {per_epoch * (total - epoch):.0f} s",
            flush=True,
        )


def collapse_gap(rows: list[dict]) -> float | None:
    """Train top-1 minus val top-1 in the last epoch (pp), when both were measured."""
    if not rows or rows[-1].get("train_top1") is None or rows[-1].get("val_top1") is None:
        return None
    return rows[-1]["train_top1"] - rows[-1]["val_top1"]


def train_run(
    model: dict,
    data: dict | None = None,
    train: dict | None = None,
    seed: int = 0,
    workdir: str | Path | None = None,
    progress: bool = True,
    callbacks: Sequence[L.Callback] = (),
    measure_cost: bool = True,
    label: str = "",
) -> dict:
    """Train ``model`` (``{"name": ..., **toggles}``) and return the result of the run.

    ``progress``: a progress bar when stdout is a terminal, else one line per epoch (prefixed
    with ``label``); False prints nothing per epoch.
    """
    model = dict(model)
    name = model.pop("name")
    data_cfg = DataConfig(**(data or {}))
    train_cfg = TrainConfig(**(train or {}))
    workdir = Path(workdir) if workdir else None
    if workdir:
        workdir.mkdir(parents=True, exist_ok=True)

    L.seed_everything(seed, workers=True, verbose=False)
    dm = ImageDataModule(data_cfg, seed=seed)
    dm.setup()
    c, h, _ = dm.input_shape
    module = ClassificationModule(
        name, model, num_classes=dm.num_classes, in_chans=c, img_size=h, train=vars(train_cfg)
    )

    gpu = on_gpu(train_cfg.accelerator)
    precision = resolve_precision(train_cfg.precision, train_cfg.accelerator)
    throughput = TrainThroughput()
    curves = EpochCurves(workdir / CURVES if workdir else None)
    bar = progress and sys.stdout.isatty()
    cbs: list[L.Callback] = [throughput, curves, *callbacks]
    if progress and not bar:
        cbs.append(EpochLines(label))
    ckpt_path, threads = None, None
    restart_epoch = 0
    if workdir:
        cbs.append(
            L.pytorch.callbacks.ModelCheckpoint(  # no monitor: keeps the latest epoch as last.ckpt
                dirpath=workdir,
                filename="last",
                save_top_k=1,
                every_n_epochs=1,
                enable_version_counter=False,
                # after on_train_epoch_end: the epoch's curve row is in the checkpoint
                save_on_train_epoch_end=True,
            )
        )
        plan = plan_resume(workdir / CHECKPOINT)
        if plan.resume:
            ckpt_path, restart_epoch, threads = (
                str(workdir / CHECKPOINT),
                plan.epochs_done,
                plan.threads,
            )
        elif plan.reason:  # from another CPU, device or code: the run starts over
            print(f"{label}{plan.reason}: starting the run over", flush=True)
            (workdir / CHECKPOINT).unlink()
            (workdir / CURVES).unlink(missing_ok=True)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no GPU/TPU/tip banners
    max_epochs = train_cfg.epochs
    if train_cfg.steps is not None:  # a budget in steps: as many epochs as it takes
        # StepBudget alone stops it: Lightning's max_steps would make the training
        # "iteration-based", which resumes a checkpoint written at an epoch's end by running
        # that epoch's end again and one batch more (data order and curve then differ from
        # the uninterrupted run's)
        per_epoch = max(1, len(dm.train_dataloader()))
        max_epochs = math.ceil(train_cfg.steps / per_epoch)
        cbs.append(StepBudget(train_cfg.steps))
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        precision=precision,
        gradient_clip_val=train_cfg.grad_clip,
        deterministic=train_cfg.deterministic,
        logger=False,
        callbacks=cbs,
        enable_checkpointing=workdir is not None,
        enable_progress_bar=bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=validation_interval(max_epochs, train_cfg.val_every),
        limit_train_batches=train_cfg.limit_train_batches,
        default_root_dir=str(workdir) if workdir else None,
    )
    result: dict = {"status": "ok", "error": "", "diverged_epoch": None}
    cpu_bf16 = precision == "bf16-mixed" and not gpu
    with (
        PeakMemory() as memory,
        wall_clock() as wall,
        warnings.catch_warnings(),
        cpu_bf16_kernels(cpu_bf16),
        run_threads(threads),  # a resumed run keeps the thread count it started with
    ):
        result["threads"] = torch.get_num_threads()  # the row's: the run's, not the worker's
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        # a resumed run finds its own checkpoints in its directory: expected, not a clash
        warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        except DivergedError as err:
            result.update(status="diverged", error=str(err), diverged_epoch=err.epoch)
        if result["status"] == "ok":
            test = trainer.test(module, datamodule=dm, verbose=False)[0]
            result.update(
                test_top1=100 * test["test_top1"],
                test_top5=100 * test["test_top5"],
                test_loss=test["test_loss"],
            )
    vals = [r for r in curves.rows if r.get("val_top1") is not None]
    best = max(vals, key=lambda r: r["val_top1"]) if vals else None
    gap = collapse_gap(curves.rows)
    if result["status"] == "ok" and gap is not None and gap > train_cfg.collapse_gap:
        result.update(
            status="collapsed",
            error=f"val top-1 is {gap:.1f} pp below train top-1 in the last epoch "
            f"(limit {train_cfg.collapse_gap:g}): evaluation does not describe the trained net",
        )
    result.update(
        val_top1=vals[-1]["val_top1"] if vals else None,
        best_val_top1=best["val_top1"] if best else None,
        best_epoch=best["epoch"] if best else None,
        epochs_run=len(curves.rows),
        restart_epoch=restart_epoch,
        # the time the run trained before the checkpoint it resumed from (0 if it did not)
        before_restart_s=module.seconds_before_restart,
        train_img_s=throughput.img_s,
        peak_mem_mb=memory.mb,
        wall_s=wall["seconds"],
        epochs=curves.rows,
    )
    if measure_cost:
        net = module._eval_model()
        result.update(
            params=count_params(module.model),
            macs=count_macs(net, dm.input_shape),
            infer_img_s=inference_throughput(
                net, dm.input_shape, data_cfg.eval_batch_size, seconds=train_cfg.bench_seconds
            )
            if train_cfg.bench_seconds > 0
            else None,
        )
    return result
