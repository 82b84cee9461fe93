"""What the prototype lacked: a loss that cannot stay flat unnoticed, and a look inside the first batches."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import torch
from torch import nn

from weldfusion.data.categories import category_name
from weldfusion.training.losses import pair_masks


@dataclass
class FlatLossMonitor:
    """Flags a training loss whose range over the last `steps` steps is under `tolerance` x its size."""

    steps: int = 50
    tolerance: float = 1e-3
    losses: deque = field(default_factory=deque)
    degenerate: deque = field(default_factory=deque)

    def update(self, loss: float, degenerate: bool) -> bool:
        self.losses.append(loss)
        self.degenerate.append(degenerate)
        if len(self.losses) > self.steps:
            self.losses.popleft()
            self.degenerate.popleft()
        if len(self.losses) < self.steps:
            return False
        spread = max(self.losses) - min(self.losses)
        return spread <= self.tolerance * max(abs(sum(self.losses) / len(self.losses)), 1e-8)

    def causes(self, model: nn.Module, lr: float, grad_norm: float | None) -> list[str]:
        """The likely causes that can be checked from here."""
        found = []
        if sum(self.degenerate):
            found.append(f"{sum(self.degenerate)} of the last {len(self.degenerate)} batches had no positive or no "
                         "negative pair (single-class batches: is the training split all one category?)")  # fmt: skip
        if not any(p.requires_grad for p in model.parameters()):
            found.append("no parameter is trainable")
        if grad_norm is not None and grad_norm == 0.0:
            found.append("the gradient norm is 0")
        if lr < 1e-8:
            found.append(f"the learning rate is ~0 ({lr:.2e})")
        return found or ["none of the checkable causes (single-class batches, no trainable parameter, zero "
                         "gradient, lr ~ 0); check the data and the learning rate"]  # fmt: skip


def batch_report(batch: dict) -> list[str]:
    """Label histogram, positive pairs and feature statistics of one batch."""
    labels = batch["label"]
    positive, negative = pair_masks(labels)
    histogram = Counter(category_name(int(label)) for label in labels)
    lines = [f"labels: {dict(sorted(histogram.items()))}",
             f"pairs: {int(positive.sum())} positive, {int(negative.sum())} negative ({len(histogram)} classes in {len(labels)} welds)"]  # fmt: skip
    for kind, masks in (("tokens", "token_mask"), ("inputs", "mask")):
        for modality, values in batch.get(kind, {}).items():
            mask = batch[masks][modality]
            values = values.float()
            lines.append(f"{kind} {modality}: shape {tuple(values.shape)}, mean {values.mean():.3f}, std {values.std():.3f}, "
                         f"valid {mask.float().mean():.0%}")  # fmt: skip
    return lines


def gradient_report(model: nn.Module) -> tuple[list[str], float]:
    """Which trainable parameters received a non-zero gradient, and the total gradient norm."""
    with_grad, without = [], []
    total = 0.0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is not None and bool(p.grad.abs().sum() > 0):
            with_grad.append(name)
            total += float(p.grad.detach().float().norm() ** 2)
        else:
            without.append(name)
    lines = [f"gradients: {len(with_grad)} trainable tensors received one, {len(without)} did not"]
    if without:
        lines.append("  no gradient: " + ", ".join(without[:10]) + (" ..." if len(without) > 10 else ""))
    lines.append(f"gradient norm: {total ** 0.5:.4g}")
    return lines, total**0.5


def trainable_report(model: nn.Module) -> list[str]:
    groups: Counter = Counter()
    frozen: Counter = Counter()
    for name, p in model.named_parameters():
        top = ".".join(name.split(".")[:2])
        (groups if p.requires_grad else frozen)[top] += p.numel()
    lines = ["trainable: " + ", ".join(f"{k} {v:,}" for k, v in groups.items())]
    if frozen:
        lines.append("frozen: " + ", ".join(f"{k} {v:,}" for k, v in frozen.items()))
    return lines


def grad_norm(model: nn.Module) -> float:
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0
