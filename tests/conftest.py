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
REAL_MANIFEST = Path(__file__).parent / "data" / "intel_manifest.csv"  # verified copy of the real one


@pytest.fixture(scope="session")
def real_manifest() -> Manifest:
    return read_manifest(REAL_MANIFEST)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 welds per defect class (10 Good), 2 s each, small files, supervised split. Treat as read-only."""
    root = tmp_path_factory.mktemp("synth")
    synthesize(root, per_class=5, seconds=2.0, size="small", split="supervised", seed=SEED, workers=2)
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
