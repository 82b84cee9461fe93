"""`weldfusion train`: the run folder (SPEC §10), guard rails, Lightning's Trainer, the exported model."""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from weldfusion import __version__
from weldfusion.config import Config, load_config, save_config
from weldfusion.data.sampler import contrastive_ready
from weldfusion.data.samples import Sample
from weldfusion.data.transforms import SensorStats
from weldfusion.errors import InputError
from weldfusion.io import write_atomic, write_json_atomic
from weldfusion.models.artifact import export_model, save_reference
from weldfusion.models.backbones import digest
from weldfusion.models.inference import embed
from weldfusion.models.preprocessing import build_transforms
from weldfusion.training.callbacks import RunLogs
from weldfusion.training.datamodule import WeldDataModule, load_samples, require_contrastive
from weldfusion.training.module import WeldFusionModule


class RunPaths:
    """The run folder layout of SPEC §10."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.run_info = self.root / "run.json"
        self.checkpoints = self.root / "checkpoints"
        self.model = self.root / "model"
        self.logs = self.root / "logs"
        self.sensor_stats = self.root / "sensor_stats.json"

    def eval(self, split: str) -> Path:
        return self.root / "eval" / split


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed: a kill never leaves a half-written one."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:  # type: ignore[override]
        write_atomic(Path(path), lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict:  # type: ignore[override]
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise InputError(f"{path}: damaged or not a weldfusion checkpoint ({str(exc).splitlines()[0]})") from None


def data_fingerprint(manifest: Path, samples: list[Sample]) -> str:
    """The manifest's bytes and every sample's file names and sizes (cheap: no media is read)."""
    files = [(s.key, [(p.name, p.stat().st_size) for ps in s.files.values() for p in ps]) for s in samples]
    return digest({"manifest": manifest.read_bytes().decode("utf-8", "replace"), "files": files})


def quiet_lightning() -> None:
    """Keep Lightning's banners (accelerator lines, tips) off the console; warnings still show."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def precision(config: Config) -> str:
    if config.train.precision != "auto":
        return config.train.precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32"


@dataclass
class TrainResult:
    run: Path
    epochs: int
    best_val_loss: float | None


def train(root: Path, out: Path, config: Config, manifest: Path | None = None, resume: bool = False,
          devices: int = 1, num_nodes: int = 1, accelerator: str = "auto", debug: bool = False,
          say=print, progress=None, progress_bar: bool = False) -> TrainResult:  # fmt: skip
    """Train the classify protocol (SupCon) into the run folder `out`; see `fit_anomaly` for the other."""
    paths = RunPaths(Path(out))
    manifest = Path(manifest or Path(root) / "manifest.csv")
    if resume:
        config, root, manifest = resume_settings(paths)
    elif paths.checkpoints.exists() and any(paths.checkpoints.iterdir()):
        raise InputError(f"{paths.root}: already holds a run; use --resume to continue it or choose another --out")
    samples = load_samples(Path(root), manifest, config.model.modalities)
    require_contrastive(samples, "train", manifest)
    paths.root.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_config(config, paths.config)
        write_json_atomic(paths.run_info, {"data_root": str(Path(root).resolve()), "manifest": str(manifest.resolve()),
                                           "protocol": "classify", "weldfusion": __version__})  # fmt: skip
    quiet_lightning()
    L.seed_everything(config.seed, workers=True, verbose=False)
    transforms = build_transforms(config)
    data = WeldDataModule(samples, config, transforms, paths.sensor_stats, progress)
    module = WeldFusionModule(config.to_dict(), data.cached, debug=debug)
    validate = contrastive_ready([s.label for s in samples if s.split == "val"])
    monitor = "val_loss" if validate else "train_loss_epoch"
    if not validate:
        say("warning: the validation split is missing or cannot form contrastive batches (>= 2 classes with >= 2 "
            "welds): checkpoints and early stopping follow the training loss")  # fmt: skip
    checkpoint = ModelCheckpoint(dirpath=paths.checkpoints, filename="best", monitor=monitor, mode="min",
                                 save_last=True, save_top_k=1, enable_version_counter=False)  # fmt: skip
    callbacks: list = [RunLogs(paths.logs, say), checkpoint]
    if config.train.patience > 0:
        callbacks.append(EarlyStopping(monitor=monitor, mode="min", patience=config.train.patience))
    if progress_bar:
        callbacks.append(RichProgressBar())
    trainer = L.Trainer(
        max_epochs=config.train.epochs, accelerator=accelerator, devices=devices, num_nodes=num_nodes,
        strategy="ddp" if devices * num_nodes > 1 else "auto", precision=precision(config),
        gradient_clip_val=config.train.grad_clip or None, callbacks=callbacks, logger=False,
        enable_progress_bar=progress_bar, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        use_distributed_sampler=False, deterministic=not torch.cuda.is_available() or "warn",
        plugins=[AtomicCheckpointIO()], default_root_dir=paths.root,
    )  # fmt: skip
    last = paths.checkpoints / "last.ckpt"
    if resume and not last.is_file():
        raise InputError(f"{last}: no checkpoint to resume from")
    trainer.fit(module, datamodule=data, ckpt_path=last if resume else None)
    best_score = checkpoint.best_model_score
    if trainer.is_global_zero:
        best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
        finish(paths, module, data, config, best, manifest, samples)
    return TrainResult(paths.root, trainer.current_epoch, None if best_score is None else float(best_score))


def resume_settings(paths: RunPaths) -> tuple[Config, Path, Path]:
    if not paths.config.is_file() or not paths.run_info.is_file():
        raise InputError(f"{paths.root}: not a run folder (config.yaml / run.json missing); nothing to resume")
    info = json.loads(paths.run_info.read_text(encoding="utf-8"))
    return load_config(str(paths.config)), Path(info["data_root"]), Path(info["manifest"])


def finish(paths: RunPaths, module: WeldFusionModule, data: WeldDataModule, config: Config, best: Path,
           manifest: Path, samples: list[Sample]) -> None:  # fmt: skip
    """Export the best weights as the inference artefact, with the embedded training welds."""
    state = AtomicCheckpointIO().load_checkpoint(best)["state_dict"]
    module.load_state_dict(state)
    model = module.model.cpu().eval()
    stats = SensorStats.load(paths.sensor_stats) if paths.sensor_stats.is_file() else None
    meta = {"checkpoint": str(best.resolve().relative_to(paths.root.resolve())), "cached": data.cached, "protocol": "classify",
            "data_fingerprint": data_fingerprint(manifest, samples), "weldfusion": __version__}  # fmt: skip
    export_model(paths.model, model, config, stats, meta)
    data.setup()
    reference = embed(model, data.dataset(data.split("train")), batch_size=config.train.batch_size)
    save_reference(paths.model, reference.embeddings, reference.labels, reference.keys)

