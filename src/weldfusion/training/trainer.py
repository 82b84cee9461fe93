"""SupCon training on Lightning for the classify protocol: the Trainer, checkpoints, the exported model."""

from __future__ import annotations

import logging
import signal
import threading
import pickle
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from weldfusion import __version__
from weldfusion.config import Config
from weldfusion.data.sampler import contrastive_ready
from weldfusion.errors import InputError
from weldfusion.io import write_atomic
from weldfusion.models.artifact import export_model
from weldfusion.models.devices import resolve_device
from weldfusion.runs import RunData, data_fingerprint, load_standardisation
from weldfusion.training.callbacks import RunLogs
from weldfusion.training.datamodule import WeldDataModule
from weldfusion.training.module import WeldFusionModule


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed: a kill never leaves a half-written one."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:  # type: ignore[override]
        write_atomic(Path(path), lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict:  # type: ignore[override]
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise InputError(f"{path}: damaged or not a weldfusion checkpoint ({str(exc).splitlines()[0]})") from None


@contextmanager
def noting_interrupts() -> Iterator[list[int]]:
    """Record SIGINTs (then act as before), so that an error they caused is reported as an interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGINT)

    def note(number: int, frame: object) -> None:
        seen.append(number)
        if callable(previous):
            previous(number, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


class ExtendableEarlyStopping(EarlyStopping):
    """On resume, keep the configured patience (`--set train.patience`) and count anew: an extended run
    is not stopped by the patience it had used up before."""

    def load_state_dict(self, state_dict: dict) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience, self.wait_count, self.stopped_epoch = patience, 0, 0


def quiet_lightning() -> None:
    """Keep Lightning's banners (accelerator lines, tips) off the console; warnings still show."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def precision(config: Config, device: torch.device) -> str:
    if config.train.precision != "auto":
        return config.train.precision
    if device.type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32"


def train_classifier(data: RunData, resume: bool = False, devices: int = 1, num_nodes: int = 1, accelerator: str = "auto",
                     debug: bool = False, say: Callable[[str], None] = print, progress_bar: bool = False) -> bool:  # fmt: skip
    """SupCon training of the run's model on its train split (Lightning); the best weights are exported
    to RUN/model/ by the global-zero process, which alone gets True back."""
    paths, config = data.run.paths, data.run.config
    device = resolve_device(accelerator, devices)
    quiet_lightning()
    L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = WeldDataModule(data)
    module = WeldFusionModule(config.to_dict(), data.features.frozen, debug=debug)
    validate = contrastive_ready([s.label for s in data.split("val")])
    monitor = "val_loss" if validate else "train_loss_epoch"
    if not validate:
        say("warning: the validation split is missing or cannot form contrastive batches (>= 2 classes with >= 2 "
            "welds): checkpoints and early stopping follow the training loss")  # fmt: skip
    checkpoint = ModelCheckpoint(dirpath=paths.checkpoints, filename="best", monitor=monitor, mode="min",
                                 save_last=True, save_top_k=1, enable_version_counter=False)  # fmt: skip
    callbacks: list = [RunLogs(paths.logs, say), checkpoint]
    if config.train.patience > 0:
        callbacks.append(ExtendableEarlyStopping(monitor=monitor, mode="min", patience=config.train.patience))
    if progress_bar:
        callbacks.append(RichProgressBar())
    trainer = L.Trainer(
        max_epochs=config.train.epochs, accelerator=accelerator, devices=devices, num_nodes=num_nodes,
        strategy="ddp" if devices * num_nodes > 1 else "auto", precision=precision(config, device),
        gradient_clip_val=config.train.grad_clip or None, callbacks=callbacks, logger=False,
        enable_progress_bar=progress_bar, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        use_distributed_sampler=False, deterministic=device.type != "cuda" or "warn",
        plugins=[AtomicCheckpointIO()], default_root_dir=paths.root,
    )  # fmt: skip
    last = paths.checkpoints / "last.ckpt"
    with noting_interrupts() as interrupted:
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=last if resume else None)
        except SystemExit:  # Lightning turns Ctrl-C into a graceful shutdown and exit status 1
            if trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
        except Exception:  # Ctrl-C inside native code (e.g. a safetensors read) surfaces as another error
            if interrupted:
                raise KeyboardInterrupt from None
            raise
    if trainer.is_global_zero:
        best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
        export(data, module, best)
        best_loss = "" if checkpoint.best_model_score is None else f", best {monitor} {float(checkpoint.best_model_score):.4f}"
        say(f"trained {trainer.current_epoch} epoch(s){best_loss}; run folder {paths.root}")
    return trainer.is_global_zero


def export(data: RunData, module: WeldFusionModule, best: Path) -> None:
    """The best weights as the inference artefact (model.safetensors + config.json)."""
    paths = data.run.paths
    module.load_state_dict(AtomicCheckpointIO().load_checkpoint(best)["state_dict"])
    meta = {"checkpoint": str(best.resolve().relative_to(paths.root.resolve())), "cached": data.features.frozen,
            "protocol": "classify", "data_fingerprint": data_fingerprint(data.run.manifest, data.samples),
            "weldfusion": __version__}  # fmt: skip
    export_model(paths.model, module.model.cpu().eval(), data.run.config, load_standardisation(paths.standardisation), meta)
