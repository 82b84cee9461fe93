"""Run logs: logs/metrics.csv (one row per epoch) and logs/steps.csv (one row per step), plus a
one-line summary per epoch. Both files are rewritten atomically at each epoch end; on resume, rows
of the epochs being redone are dropped first."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import lightning as L

from weldfusion.io import write_text_atomic

EPOCH_FIELDS = ["epoch", "train_loss", "val_loss", "lr", "seconds", "positives_per_batch", "steps"]
STEP_FIELDS = ["epoch", "step", "loss", "lr", "positives", "grad_norm", "seconds"]


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class RunLogs(L.Callback):
    def __init__(self, log_dir: Path, say=print):
        self.metrics_path = Path(log_dir) / "metrics.csv"
        self.steps_path = Path(log_dir) / "steps.csv"
        self.say = say
        self.epochs: list[dict] = []
        self.steps: list[dict] = []
        self.started = 0.0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        first = trainer.current_epoch  # > 0 when resuming (the checkpoint is restored by now)
        self.epochs = [r for r in read_rows(self.metrics_path) if int(r["epoch"]) < first]
        self.steps = [r for r in read_rows(self.steps_path) if int(r["epoch"]) < first]

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        metrics = trainer.callback_metrics
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.steps.append({
            "epoch": trainer.current_epoch, "step": trainer.global_step, "loss": f"{float(loss):.6f}",
            "lr": f"{trainer.optimizers[0].param_groups[0]['lr']:.6e}",
            "positives": int(_number(metrics.get("positives_step")) or 0),
            "grad_norm": f"{module.last_grad_norm:.6f}" if module.last_grad_norm is not None else "",
            "seconds": f"{time.perf_counter() - self.started:.3f}",
        })  # fmt: skip

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        seconds = time.perf_counter() - self.started
        row = {
            "epoch": trainer.current_epoch, "train_loss": _fmt(metrics.get("train_loss_epoch")),
            "val_loss": _fmt(metrics.get("val_loss")), "lr": f"{trainer.optimizers[0].param_groups[0]['lr']:.6e}",
            "seconds": f"{seconds:.2f}", "positives_per_batch": _fmt(metrics.get("positives_epoch"), 1),
            "steps": sum(1 for s in self.steps if int(s["epoch"]) == trainer.current_epoch),
        }  # fmt: skip
        self.epochs.append(row)
        write_rows(self.metrics_path, EPOCH_FIELDS, self.epochs)
        write_rows(self.steps_path, STEP_FIELDS, self.steps)
        self.say(f"epoch {row['epoch']:>3}  train loss {row['train_loss']}  val loss {row['val_loss']}  "
                 f"lr {float(row['lr']):.2e}  {seconds:.1f} s  {row['positives_per_batch']} positive pairs/batch")  # fmt: skip


def _fmt(value: object, digits: int = 4) -> str:
    number = _number(value)
    return "" if number is None else f"{number:.{digits}f}"
