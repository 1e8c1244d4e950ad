"""One LightningModule for image classification around any timm model name plus toggles.

The module owns the recipe (optimizer, schedule, loss, mixup, EMA) and the metrics; the model
is a plain ``nn.Module`` built by ``timm.create_model(name, **toggles)``, so every ablation is
a keyword argument and nothing here knows about a particular paper.
"""

from __future__ import annotations

import itertools
import math
import random
import time

import lightning as L
import numpy as np
import timm
import timm.data
import timm.loss
import timm.optim
import timm.utils
import torch
import torch.nn as nn
import torchmetrics

from experiments.run.models import create_model
from experiments.run.recipe import TrainConfig, fused_adamw_ok
from experiments.run.resume import compute_signature
from modules.layers.bn_folding import folded_copy, has_batchnorm

__all__ = ["ClassificationModule", "DivergedError", "TrainConfig", "create_model"]


class DivergedError(RuntimeError):
    """The training loss became NaN or Inf; the run is stored as ``diverged``."""

    def __init__(self, epoch: int, step: int):
        self.epoch, self.step = epoch, step
        super().__init__(f"loss is not finite at epoch {epoch}, step {step}")


def _numpy_state_to_plain(state: tuple) -> tuple:
    name, keys, pos, has_gauss, gauss = state
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))


def cosine_with_warmup(total_steps: int, warmup_steps: int, min_ratio: float):
    """Per-step multiplier: linear warm-up to 1, then cosine down to ``min_ratio``."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return f


class ClassificationModule(L.LightningModule):
    def __init__(
        self,
        model_name: str,
        model_kwargs: dict | None = None,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 28,
        train: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = TrainConfig(**(train or {}))
        toggles = dict(model_kwargs or {})
        if self.cfg.drop_path:
            toggles.setdefault("drop_path_rate", self.cfg.drop_path)
        self.model = create_model(model_name, num_classes, in_chans, img_size, **toggles)
        self.ema = None
        if self.cfg.ema_decay:
            self.ema = timm.utils.ModelEmaV3(self.model, decay=self.cfg.ema_decay)
        self.mixup = None
        if self.cfg.mixup > 0 or self.cfg.cutmix > 0:
            self.mixup = timm.data.Mixup(
                mixup_alpha=self.cfg.mixup,
                cutmix_alpha=self.cfg.cutmix,
                label_smoothing=self.cfg.label_smoothing,
                num_classes=num_classes,
            )
            self.train_loss = timm.loss.SoftTargetCrossEntropy()
        else:
            self.train_loss = nn.CrossEntropyLoss(label_smoothing=self.cfg.label_smoothing)
        self.eval_loss = nn.CrossEntropyLoss()
        top5 = min(5, num_classes)
        for stage in ("train", "val", "test"):
            setattr(
                self, f"{stage}_top1", torchmetrics.Accuracy("multiclass", num_classes=num_classes)
            )
        for stage in ("val", "test"):
            setattr(
                self,
                f"{stage}_top5",
                torchmetrics.Accuracy("multiclass", num_classes=num_classes, top_k=top5),
            )
        self._channels_last = False
        self._inference_net: nn.Module | None = None  # the folded copy during val and test
        # a resumed run's time before its last checkpoint (the compute table counts it: the
        # row's own times start at the restart)
        self.seconds_before_restart = 0.0
        self._fit_started: float | None = None
        self.validated_epochs: set[int] = set()

    # ------------------------------------------------------------------ setup
    def configure_model(self) -> None:
        on_gpu = self.device.type == "cuda"
        mode = self.cfg.channels_last
        self._channels_last = (mode == "auto" and on_gpu) or mode == "on"
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.cfg.compile and not getattr(self, "_compiled", False):
            self.model = torch.compile(self.model)
            self._compiled = True

    def configure_optimizers(self):
        # timm puts norms, biases and model.no_weight_decay() (pos/cls embeddings) at wd 0
        opt = timm.optim.create_optimizer_v2(
            self.model,
            "adamw",
            lr=self.cfg.lr,
            weight_decay=self.cfg.weight_decay,
            fused=fused_adamw_ok(self.model),
        )
        total = int(self.trainer.estimated_stepping_batches)
        if self.cfg.steps is not None:  # a step budget ends the run early (train.StepBudget)
            total = min(total, self.cfg.steps)
        total = max(1, total)
        epochs = max(1, self.trainer.max_epochs or self.cfg.epochs)
        warmup = int(round(self.cfg.warmup_epochs * total / epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, cosine_with_warmup(total, warmup, self.cfg.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        """Clip the gradients' global norm here, the same call Lightning makes in fp32.

        Why: under ``bf16-mixed`` Lightning refuses to clip for a fused AdamW (a fused
        optimizer may unscale fp16 gradients inside its step). bf16 has no loss scaler, so
        nothing is scaled and clipping before the step is right in every precision.
        """
        if gradient_clip_val:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    # ------------------------------------------------------------------ resume
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep every RNG a training step draws from (dropout, drop-path, augmentation:
        torch; mixup: numpy and random), so a resumed run continues bit-identically, and the
        compute that wrote it (``experiments.run.resume``: threads, CPU, device)."""
        checkpoint["compute"] = compute_signature()
        since = time.perf_counter() - self._fit_started if self._fit_started else 0.0
        checkpoint["trained_s"] = self.seconds_before_restart + since
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            # plain types and tensors only: checkpoints are loaded with weights_only=True
            "numpy": _numpy_state_to_plain(np.random.get_state()),  # noqa: NPY002 (timm Mixup draws from it)
            "python": random.getstate(),
        }

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.seconds_before_restart = float(checkpoint.get("trained_s", 0.0))
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        name, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((name, keys.numpy(), pos, has_gauss, gauss))  # noqa: NPY002
        random.setstate(states["python"])

    # ------------------------------------------------------------------ steps
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        target = y
        if self.mixup is not None and len(x) % 2 == 0:
            x, target = self.mixup(x, y)
        elif self.mixup is not None:  # timm's Mixup needs an even batch
            target = torch.nn.functional.one_hot(y, self.hparams.num_classes).float()
        logits = self(x)
        loss = self.train_loss(logits, target)
        if (
            self.cfg.inject_nan_at_step is not None
            and self.global_step >= self.cfg.inject_nan_at_step
        ):
            loss = loss * float("nan")
        if not torch.isfinite(loss):
            raise DivergedError(self.current_epoch, self.global_step)
        self.train_top1(logits.detach(), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train_top1", self.train_top1, on_step=False, on_epoch=True)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=False, on_epoch=True)
        return loss

    def on_after_backward(self) -> None:
        """A zero gradient for each parameter the model skipped because it cannot reach the
        logits (``unreached_parameters``: LocalViT's last FFN): AdamW's weight decay and
        moments and the clipped gradient norm then run on exactly the tensors the full
        computation gives, so a run trains bit for bit as it did before the skip."""
        unreached = getattr(self.model, "unreached_parameters", None)
        for p in unreached() if unreached is not None else ():
            if p.grad is None and p.requires_grad:
                p.grad = torch.zeros_like(p)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _eval_step(self, batch, stage: str):
        x, y = batch
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = (self._inference_net or self._eval_model())(x)
        loss = self.eval_loss(logits.float(), y)
        getattr(self, f"{stage}_top1")(logits, y)
        getattr(self, f"{stage}_top5")(logits, y)
        self.log(f"{stage}_loss", loss, prog_bar=stage == "val")
        self.log(f"{stage}_top1", getattr(self, f"{stage}_top1"), prog_bar=stage == "val")
        self.log(f"{stage}_top5", getattr(self, f"{stage}_top5"))

    def _precise_bn(self) -> None:
        """Recompute BatchNorm statistics of the evaluated network over training batches.

        The draws happen in a forked RNG seeded by the epoch, so training after it (and a
        resumed run) sees exactly the random stream it would see without it.
        """
        net = self._eval_model()
        n = self.cfg.precise_bn
        if not n or not has_batchnorm(net):
            return
        dm = self.trainer.datamodule
        memory = torch.channels_last if self._channels_last else torch.contiguous_format
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1_000_003 * (self.current_epoch + 1))
            batches = (  # training images as evaluation sees them: normalised, not augmented
                dm.normalize(x.to(self.device)).contiguous(memory_format=memory)
                for x, _ in itertools.islice(dm.train_dataloader(), n)
            )
            was_training = net.training
            torch.optim.swa_utils.update_bn(batches, net)
            net.train(was_training)

    def _fold_for_evaluation(self) -> None:
        """The network evaluation runs: a copy with its BatchNorms folded (``fold_bn``),
        taken after precise BN so it has the statistics evaluation uses; rebuilt for every
        pass, since training moves the weights in between. A compiled network is evaluated
        as it is (its graph is the compiler's to fuse)."""
        net = self._eval_model()
        fold = self.cfg.fold_bn and not self.cfg.compile and has_batchnorm(net)
        self._inference_net = folded_copy(net) if fold else None

    def on_validation_epoch_start(self) -> None:
        self._precise_bn()
        self._fold_for_evaluation()

    def on_validation_epoch_end(self) -> None:
        self._inference_net = None
        if not self.trainer.sanity_checking:  # the epochs whose curve row has validation
            self.validated_epochs.add(self.current_epoch)

    def on_test_epoch_start(self) -> None:
        self._precise_bn()
        self._fold_for_evaluation()

    def on_test_epoch_end(self) -> None:
        self._inference_net = None

    def validation_step(self, batch, batch_idx: int):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int):
        self._eval_step(batch, "test")
