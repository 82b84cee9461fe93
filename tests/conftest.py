"""Shared fixtures: one small synthetic dataset in the real format per test session, and variants of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from weldfusion.config import Config, load_config
from weldfusion.data.manifest import Manifest, read_manifest
from weldfusion.synth.generate import synthesize

SEED = 0
BUILTIN = ("video", "images", "audio", "sensor")
REAL_MANIFEST = Path(__file__).parent / "data" / "intel_manifest.csv"  # verified copy of the real one


@pytest.fixture(scope="session")
def real_manifest() -> Manifest:
    return read_manifest(REAL_MANIFEST)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 welds per defect class (16 Good), 2 s each, small files, supervised split. Treat as read-only."""
    root = tmp_path_factory.mktemp("synth")
    synthesize(root, per_class=8, seconds=2.0, size="small", split="supervised", seed=SEED, workers=2)
    return root


@pytest.fixture(scope="session")
def cpu_config() -> Config:
    return load_config("cpu")


def copy_dataset(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def manifest_frame(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)


def weld_folder(root: Path, index: int) -> tuple[str, Path]:
    """SUBDIRS and folder of the manifest's `index`-th row."""
    key = manifest_frame(root)["SUBDIRS"].iloc[index]
    return key, root / key


@pytest.fixture(scope="session")
def corrupt_root(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy with the known real-world defects: what each row has is returned as {name: SUBDIRS}."""
    root = copy_dataset(synth_root, tmp_path_factory.mktemp("corrupt") / "data")
    keys = {}
    key, folder = weld_folder(root, 0)
    video = next(folder.glob("*.avi"))
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    keys["truncated_video"] = key
    key, folder = weld_folder(root, 1)
    next(folder.glob("*.flac")).unlink()
    keys["missing_flac"] = key
    key, folder = weld_folder(root, 2)
    shutil.rmtree(folder / "images")
    keys["no_images"] = key
    key, folder = weld_folder(root, 3)
    for extra in sorted((folder / "images").glob("*.jpg"))[3:]:
        extra.unlink()
    keys["three_images"] = key
    key, folder = weld_folder(root, 4)
    csv = next(folder.glob("*.csv"))
    lines = csv.read_text().splitlines()
    cells = lines[5].split(",")
    cells[1] = "not-a-time"
    cells[6] = ""  # Primary Weld Current
    cells[5] = "n/a"  # Feed
    lines[5] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    keys["nan_csv"] = key
    key, folder = weld_folder(root, 5)
    for f in folder.rglob("*"):
        if f.is_file():
            f.unlink()
    keys["all_missing"] = key
    frame = manifest_frame(root)
    unknown = frame.iloc[[6]].assign(CATEGORY="Cold_Lap")
    escape = frame.iloc[[7]].assign(SUBDIRS="../outside/12-01-22-9999-00")
    frame = pd.concat([frame.drop(index=[6, 7]), unknown, escape], ignore_index=True)
    frame.to_csv(root / "manifest.csv", index=False)
    keys["unknown_category"] = unknown["SUBDIRS"].iloc[0]
    keys["escape"] = "../outside/12-01-22-9999-00"
    return {"root": root, "keys": keys}


TINY_ARCH = {
    "video": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 8, "tubelet_size": 2,
              "crop_size": 32, "frames_per_clip": 4, "pred_hidden_size": 16, "pred_num_hidden_layers": 1,
              "pred_num_attention_heads": 2},
    "images": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 8, "image_size": 32},
    "audio": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
              "num_mel_bins": 32, "max_length": 64, "patch_size": 16, "frequency_stride": 16, "time_stride": 16},
}  # fmt: skip


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny V-JEPA 2 / DINOv2 / AST saved with save_pretrained (random weights), with processor files."""
    import json

    import torch
    from transformers import ASTConfig, ASTModel, Dinov2Config, Dinov2Model, VJEPA2Config, VJEPA2Model

    root = tmp_path_factory.mktemp("checkpoints")
    classes = {"video": (VJEPA2Model, VJEPA2Config), "images": (Dinov2Model, Dinov2Config), "audio": (ASTModel, ASTConfig)}
    processors = {
        "video": ("video_preprocessor_config.json", {"crop_size": {"height": 32, "width": 32}, "size": {"shortest_edge": 36},
                                                     "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}),
        "images": ("preprocessor_config.json", {"crop_size": {"height": 32, "width": 32}, "size": {"shortest_edge": 40},
                                                "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}),
        "audio": ("preprocessor_config.json", {"feature_extractor_type": "ASTFeatureExtractor", "num_mel_bins": 32,
                                               "max_length": 64, "mean": -5.0, "std": 4.0, "sampling_rate": 16000}),
    }  # fmt: skip
    out = {}
    for modality, (model_class, config_class) in classes.items():
        torch.manual_seed(0)
        folder = root / modality
        model_class(config_class(**TINY_ARCH[modality])).save_pretrained(folder)
        name, settings = processors[modality]
        (folder / name).write_text(json.dumps(settings))
        out[modality] = folder
    return out


def tiny_config(checkpoints: dict[str, Path], **overrides: str) -> Config:
    """The cpu preset pointed at the tiny saved checkpoints (loaded through from_pretrained)."""
    sets = [f"model.{m}.pretrained={checkpoints[m]}" for m in ("video", "images", "audio")]
    sets += [f"model.{m}.arch={{}}" for m in ("video", "images", "audio")]
    sets += ["data.video.size=null", "data.images.size=null", "data.video.width=null", "data.images.width=null", "data.video.frames=4", "data.sensor.steps=16",
             "model.sensor.d_model=16", "model.sensor.heads=2", "model.sensor.ff=32",
             "model.fusion.dim=32", "model.fusion.heads=4", "model.fusion.hidden=64", "model.embedding_dim=32"]  # fmt: skip
    sets += [f"{k}={v}" for k, v in overrides.items()]
    return load_config("cpu", sets)


TRAIN_EPOCHS = 6


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="session")
def trained_run(synth_root: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cpu preset trained once on the session dataset (shared by training/evaluation tests)."""
    from weldfusion.engine import fit_run

    config = load_config("cpu", [f"train.epochs={TRAIN_EPOCHS}", f"cache.dir={cache_dir}"])
    run = tmp_path_factory.mktemp("runs") / "run"
    fit_run(run, synth_root, config, say=lambda *a, **k: None)
    return run


@pytest.fixture(scope="session")
def official_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An official-style split (TRAIN = Good only), 6 welds per defect class. Treat as read-only."""
    root = tmp_path_factory.mktemp("official")
    synthesize(root, per_class=6, seconds=2.0, size="small", split="official", seed=1, workers=2)
    return root


@pytest.fixture(scope="session")
def official_run(official_root: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The anomaly protocol fitted once on the official-style split."""
    from weldfusion.engine import fit_run

    run = tmp_path_factory.mktemp("runs") / "anomaly"
    fit_run(run, official_root, load_config("cpu", [f"cache.dir={cache_dir}", "protocol=anomaly"]), say=lambda *a, **k: None)
    return run
