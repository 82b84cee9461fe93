"""The LightningModule: SupCon (or SupCon + CE) on the fusion model, optimiser and LR schedule."""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from weldfusion.config import Config, from_dict
from weldfusion.models.model import WeldFusionModel
from weldfusion.training.diagnostics import FlatLossMonitor, batch_report, gradient_report, grad_norm, trainable_report
from weldfusion.training.datamodule import epoch_index
from weldfusion.training.losses import CombinedLoss


class WeldFusionModule(L.LightningModule):
    """`cached` modalities arrive as tokens from the feature cache; their encoders are not built here."""

    def __init__(self, config: dict, cached: list[str], debug: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.config: Config = from_dict(config)
        t = self.config.train
        self.model = WeldFusionModel(self.config, cached=set(cached))
        self.criterion = CombinedLoss(t.temperature, t.supcon_weight, t.ce_weight)
        self.flat = FlatLossMonitor(t.flat_loss_steps, t.flat_loss_tolerance)
        self.debug = debug
        self.last_grad_norm: float | None = None

    def forward(self, batch: dict):  # type: ignore[override]
        return self.model(batch)

    def _loss(self, batch: dict, stage: str) -> tuple[torch.Tensor, object]:
        out = self.model(batch)
        loss, stats = self.criterion(out.embedding, batch["label"], out.logits)
        size = len(batch["label"])
        self.log(f"{stage}_loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        return loss, stats

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # Every epoch depends only on (seed, epoch) and the state saved at its start, so a resumed run
        # repeats an uninterrupted one exactly (the batch plan is seeded the same way by the sampler).
        if batch_idx == 0:
            torch.manual_seed(self.config.seed * 100_003 + epoch_index(self.trainer))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.debug and batch_idx < self.config.train.debug_batches:
            self.print("\n".join([f"[debug] batch {batch_idx}"] + [f"  {line}" for line in batch_report(batch)]))
            if batch_idx == 0 and self.current_epoch == 0:
                cached = ", ".join(self.hparams.cached) or "none"
                lines = trainable_report(self.model) + [f"frozen encoders served from the feature cache: {cached}"]
                self.print("\n".join(f"  {line}" for line in lines))
        loss, stats = self._loss(augment_masks(batch, self.config.train.modality_dropout, self.config.train.token_dropout), "train")
        self.log("positives", float(stats.positive_pairs), on_step=True, on_epoch=True, batch_size=len(batch["label"]))
        if self.flat.update(float(loss.detach()), stats.degenerate):
            lr = self.optimizers().param_groups[0]["lr"]
            causes = "; ".join(self.flat.causes(self.model, lr, self.last_grad_norm))
            rank_zero_warn(f"FLAT LOSS: the training loss has stayed at {float(loss):.4f} for {self.flat.steps} steps. "
                           f"Likely causes: {causes}")  # fmt: skip
            self.flat.losses.clear()
        return loss

    def on_after_backward(self) -> None:
        if self.debug and self.global_step < self.config.train.debug_batches:
            lines, _ = gradient_report(self.model)
            self.print("\n".join(f"  {line}" for line in lines))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.last_grad_norm = grad_norm(self.model)
        self.log("grad_norm", self.last_grad_norm, on_step=True, on_epoch=False)

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._loss(batch, "val")[0]

    def configure_optimizers(self) -> dict:
        t = self.config.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameter: unfreeze an encoder or keep the sensor modality")
        if t.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        else:
            kind = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
            optimizer = kind(params, lr=t.lr, weight_decay=t.weight_decay)
        if t.scheduler == "none":
            return {"optimizer": optimizer}
        if t.scheduler == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, t.step_epochs, t.gamma)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        if t.scheduler == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=t.gamma, patience=t.plateau_patience)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"}}
        per_epoch = self.trainer.datamodule.steps_per_epoch()
        schedule = warmup_cosine(t.lr, t.warmup_start_lr, t.min_lr, t.warmup_epochs * per_epoch, t.epochs * per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def warmup_cosine(lr: float, start: float, end: float, warmup_steps: int, total_steps: int):
    """Multiplier of `lr` per step: linear from `start` to `lr` over the warmup, then cosine to `end`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (start + (lr - start) * step / warmup_steps) / lr
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return (end + (lr - end) * 0.5 * (1 + math.cos(math.pi * progress))) / lr

    return factor


def augment_masks(batch: dict, modality_p: float, token_p: float) -> dict:
    """Regularise through the masks the model already honours: hide whole modalities of a weld (never
    all of its present ones) and single cached tokens (never all of a modality's). Values are untouched."""
    if modality_p <= 0 and token_p <= 0:
        return batch
    masks = {("token_mask", m): v for m, v in batch.get("token_mask", {}).items()}
    masks.update({("mask", m): v for m, v in batch.get("mask", {}).items()})
    present = torch.stack([v.any(1) for v in masks.values()], 1)  # (B, M)
    hide = (torch.rand(present.shape, device=present.device) < modality_p) & present
    everything = (hide == present).all(1)  # would hide every present modality: keep one of them
    keep = torch.multinomial(present[everything].float() + 1e-6, 1).squeeze(1) if everything.any() else None
    if keep is not None:
        hide[everything.nonzero().squeeze(1), keep] = False
    out = {**batch, "token_mask": dict(batch.get("token_mask", {})), "mask": dict(batch.get("mask", {}))}
    for j, (kind, modality) in enumerate(masks):
        mask = masks[(kind, modality)] & ~hide[:, j : j + 1]
        if kind == "token_mask" and token_p > 0:
            dropped = mask & (torch.rand(mask.shape, device=mask.device) >= token_p)
            mask = torch.where(dropped.any(1, keepdim=True), dropped, mask)
        out[kind][modality] = mask
    return out
