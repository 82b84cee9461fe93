"""The engine: protocol interface, one feature path, run folders, modality registry, import layers."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from torch import nn

from weldfusion.cli.main import main
from weldfusion.config import Config, DataConfig, load_config
from weldfusion.data.readers import Decoded, resample_rows
from weldfusion.engine import fit_run
from weldfusion.errors import InputError, ModalityError
from weldfusion.evaluation.evaluate import evaluate_run
from weldfusion.evaluation.predict import predict
from weldfusion.modalities import ModalitySpec
from weldfusion.models.encoders import ModalityEncoder
from weldfusion.registry import MODALITIES
from weldfusion.synth.generate import synthesize

ROOT = Path(__file__).resolve().parents[1]


# -- a fifth modality, registered from this module alone --------------------------------------
class ThermalData(BaseModel):
    steps: int = 24


class ThermalModel(BaseModel):
    dim: int = 16


class ThermalEncoder(ModalityEncoder):
    def __init__(self, steps: int, dim: int):
        super().__init__()
        self.output_dim = dim
        self.project = nn.Linear(1, dim)
        self.positions = nn.Parameter(torch.randn(1, steps, dim) * 0.02)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(x.unsqueeze(1), valid)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        return self.project(items) + self.positions


class Thermal(ModalitySpec):
    """A pyrometer's bead temperature, one value per 0.1 s, as `<part>.thermal.npy`."""

    name = "thermal"
    extensions = (".thermal.npy",)
    data_settings = ThermalData
    model_settings = ThermalModel
    standardised = True

    def input_shape(self, data: DataConfig, transform: None) -> tuple[int, ...]:
        return (data.thermal.steps, 1)

    def read(self, files: tuple[Path, ...], data: DataConfig, transform: None) -> Decoded:
        try:
            values = np.load(files[0]).astype(np.float64).reshape(-1, 1)
        except (OSError, ValueError) as exc:
            raise ModalityError(files[0], f"not a readable .npy ({exc})") from None
        return Decoded(resample_rows(values, data.thermal.steps).astype(np.float32))

    def build_encoder(self, config: Config, weights: bool = True) -> ThermalEncoder:
        return ThermalEncoder(config.data.thermal.steps, config.model.thermal.dim)

    def encoder_dim(self, config: Config) -> int:
        return config.model.thermal.dim

    def has_untrained(self, config: Config) -> bool:
        return True

    def untrained_features(self, tokens, valid, value):
        return None if value is None else np.array([value.mean(), value.std(), value.max()], np.float64)

    def render(self, folder: Path, part: str, label: int, seconds: float, rng: np.random.Generator) -> None:
        t = np.arange(0, seconds, 0.1)
        temperature = 1450 + 30 * label + rng.normal(0, 5, len(t))
        np.save(folder / f"{part}.thermal.npy", temperature)


@pytest.fixture
def thermal():
    MODALITIES.register("thermal", Thermal())
    try:
        yield
    finally:
        MODALITIES.unregister("thermal")


def test_a_fifth_modality_runs_synth_check_train_evaluate_predict(thermal, tmp_path):
    data = tmp_path / "data"
    synthesize(data, per_class=4, seconds=2.0, seed=1, workers=1)
    assert len(list(data.glob("*/*/*.thermal.npy"))) == 4 * 13
    assert main(["data", "check", str(data), "--json", str(tmp_path / "check.json")]) == 0
    assert json.loads((tmp_path / "check.json").read_text())["modalities"]["thermal"] == 52
    sets = ["model.modalities=[sensor,thermal]", "train.epochs=2", f"cache.dir={tmp_path / 'cache'}", "data.thermal.steps=20"]
    fit_run(tmp_path / "run", data, load_config("cpu", sets), say=lambda *a: None)
    result = evaluate_run(tmp_path / "run", "test")
    assert "thermal" in result.metrics["per_modality"] and result.metrics["n_query"] > 0
    weld = next(data.glob("*/*"))
    (prediction,) = predict(tmp_path / "run", [weld])
    assert prediction.available == {"sensor": "ok", "thermal": "ok"} and prediction.decision in ("good", "defect")


# -- one feature path: predict gives evaluate's scores ----------------------------------------
def _evaluated_scores(run: Path) -> dict[str, float]:
    with (run / "eval" / "test" / "scores.csv").open() as f:
        return {row["key"]: float(row["defect_score"]) for row in csv.DictReader(f)}


@pytest.mark.parametrize("protocol", ["classify", "anomaly"])
def test_predict_scores_equal_evaluate_scores(protocol, trained_run, official_run, synth_root, official_root):
    run, root = (trained_run, synth_root) if protocol == "classify" else (official_run, official_root)
    scores = evaluate_run(run, "test").scores
    keys = scores.keys[:4]
    predictions = predict(run, [root / key for key in keys])
    expected = dict(zip(scores.keys, scores.defect_score))
    for key, p in zip(keys, predictions):
        assert p.defect_score == pytest.approx(expected[key], abs=1e-5)
    assert set(keys) <= set(_evaluated_scores(run))


# -- threshold: always saved, refused when missing, overridable -------------------------------
def test_predict_refuses_a_model_without_threshold_and_accepts_overrides(trained_run, synth_root, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    (run / "model" / "threshold.json").unlink()
    weld = next(synth_root.glob("*/*"))
    with pytest.raises(InputError, match="threshold.json: missing"):
        predict(run, [weld])
    (low,) = predict(run, [weld], threshold=-1.0)
    assert low.threshold == -1.0 and low.decision == "defect"
    shutil.copy(trained_run / "model" / "threshold.json", run / "model" / "threshold.json")
    good = json.loads((run / "model" / "threshold.json").read_text())["good_scores"]
    (strict,) = predict(run, [weld], false_alarm_rate=0.0)
    assert strict.threshold > max(good)


# -- resume extends a run; other changes are refused ------------------------------------------
def test_resume_extends_epochs_and_refuses_other_changes(trained_run, tmp_path):
    from tests.conftest import TRAIN_EPOCHS

    run = shutil.copytree(trained_run, tmp_path / "run")
    assert main(["train", "unused", "--out", str(run), "--resume", "--set", "train.lr=0.5"]) == 2
    assert main(["train", "unused", "--out", str(run), "--resume", "--set", f"train.epochs={TRAIN_EPOCHS + 2}",
                 "--set", "train.patience=0"]) == 0  # fmt: skip
    with (run / "logs" / "metrics.csv").open() as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == list(range(TRAIN_EPOCHS + 2))
    assert load_config(str(run / "config.yaml")).train.epochs == TRAIN_EPOCHS + 2


def test_a_run_folder_holds_one_protocol_and_refusals_write_nothing(trained_run, synth_root, tmp_path):
    before = sorted(p.name for p in trained_run.iterdir())
    config = (trained_run / "config.yaml").read_bytes()
    assert main(["train", str(synth_root), "--out", str(trained_run), "--protocol", "anomaly"]) == 2
    assert sorted(p.name for p in trained_run.iterdir()) == before and (trained_run / "config.yaml").read_bytes() == config
    official = tmp_path / "official-style"  # TRAIN holds one class: classify refuses before writing
    assert main(["train", str(synth_root), "--out", str(official), "--set", "train.epochs=1",
                 "--manifest", str(_good_only_train(synth_root, tmp_path))]) == 2  # fmt: skip
    assert not official.exists()


def _good_only_train(root: Path, tmp_path: Path) -> Path:
    import pandas as pd

    frame = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    frame.loc[(frame["CATEGORY"] != "Good") & (frame["SPLIT"] == "TRAIN"), "SPLIT"] = "VAL"
    path = tmp_path / "official.csv"
    frame.to_csv(path, index=False)
    return path


# -- layering -----------------------------------------------------------------------------------
def test_import_layers_are_kept():
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--config", str(ROOT / "pyproject.toml")],
                            cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_predict_and_evaluate_work_without_lightning(official_run, trained_run, synth_root, tmp_path):
    weld = next(synth_root.glob("*/*"))
    script = ("import sys\n"
              "class NoLightning:\n"
              "    tried = []\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name.split('.')[0] in ('lightning', 'pytorch_lightning'):\n"
              "            NoLightning.tried.append(name)\n"
              "            raise ImportError(f'{name} is not installed here')\n"
              "sys.meta_path.insert(0, NoLightning())\n"
              "from weldfusion.cli.main import main\n"
              f"codes = [main(['predict', {str(trained_run)!r}, {str(weld)!r}]), main(['predict', {str(official_run)!r}, {str(weld)!r}]),\n"
              f"         main(['evaluate', {str(official_run)!r}, '--split', 'val']), main(['evaluate', {str(trained_run)!r}, '--split', 'val'])]\n"
              "print('lightning imports tried:', NoLightning.tried)\n"
              "sys.exit(max(codes) or len(NoLightning.tried))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "lightning imports tried: []" in result.stdout


def test_an_anomaly_fit_that_cannot_work_is_refused_before_writing(official_root, cache_dir, tmp_path):
    config = load_config("cpu", [f"cache.dir={cache_dir}", "protocol=anomaly", "eval.anomaly_k=500"])
    with pytest.raises(InputError, match="needs more than 500 Good welds"):
        fit_run(tmp_path / "run", official_root, config, say=lambda *a: None)
    assert not (tmp_path / "run").exists()
    frozen_video = config.copy_with(["eval.anomaly_k=5", "model.video.unfreeze_last=1"])
    with pytest.raises(InputError, match="video has no representation without training"):
        fit_run(tmp_path / "run", official_root, frozen_video, say=lambda *a: None)
    assert not (tmp_path / "run").exists()


def test_fusion_scores_a_weld_whose_only_modality_has_weight_zero():
    from weldfusion.protocols.anomaly import fuse

    z = {"video": np.array([1.0, np.nan, np.nan]), "images": np.array([3.0, 2.0, np.nan])}
    fused = fuse(z, {"video": 1.0, "images": 0.0})
    assert fused[0] == 1.0 and fused[1] == 2.0 and np.isnan(fused[2])


def test_model_folders_written_before_the_engine_still_load(trained_run, tmp_path):
    from weldfusion.models.artifact import load_model

    model = shutil.copytree(trained_run / "model", tmp_path / "model")
    data = json.loads((model / "config.json").read_text())
    data["sensor_stats"] = data.pop("standardisation")["sensor"]
    (model / "config.json").write_text(json.dumps(data))
    threshold = json.loads((model / "threshold.json").read_text())
    (model / "threshold.json").write_text(json.dumps({"threshold": threshold["threshold"], "chosen_on": "old"}))
    assert load_model(model, cached={"video", "images", "audio"}).stats["sensor"].channels[0] == "Pressure"
    from weldfusion.protocols.base import Threshold

    assert Threshold.load(model).good_scores == []
