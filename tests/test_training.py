import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from weldfusion.cli.main import main
from weldfusion.config import load_config
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import build_samples
from weldfusion.features import build_transforms
from weldfusion.models.cache import fill_cache, open_stores
from weldfusion.models.artifact import load_model, load_reference
from weldfusion.training.diagnostics import FlatLossMonitor
from weldfusion.training.module import warmup_cosine
from tests.conftest import TRAIN_EPOCHS


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_training_loss_falls_and_run_folder_is_complete(trained_run):
    for name in ("config.yaml", "run.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt", "model/model.safetensors",
                 "model/config.json", "model/reference.safetensors", "logs/metrics.csv", "logs/steps.csv"):  # fmt: skip
        assert (trained_run / name).is_file(), name
    epochs = rows(trained_run / "logs" / "metrics.csv")
    assert [int(r["epoch"]) for r in epochs] == list(range(TRAIN_EPOCHS))
    assert float(epochs[-1]["train_loss"]) < 0.8 * float(epochs[0]["train_loss"])
    assert all(float(r["positives_per_batch"]) > 0 and r["val_loss"] for r in epochs)
    steps = rows(trained_run / "logs" / "steps.csv")
    assert len(steps) == sum(int(r["steps"]) for r in epochs) and all(float(s["grad_norm"]) > 0 for s in steps)


def test_exported_model_loads_and_reproduces_reference(trained_run):
    loaded = load_model(trained_run / "model")
    embeddings, labels, keys = load_reference(trained_run / "model")
    assert embeddings.shape == (len(keys), loaded.config.model.embedding_dim) and len(set(keys)) == len(keys)
    assert set(loaded.model.encoders) == {"video", "images", "audio", "sensor"}  # random-init encoders stored too
    assert "sensor" in loaded.stats and loaded.meta["protocol"] == "classify"
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(len(keys)))


def test_official_split_is_refused_with_the_reason(tmp_path, capsys):
    from weldfusion.synth.generate import synthesize

    synthesize(tmp_path / "d", per_class=2, seconds=0.5, split="official", seed=0, workers=2)
    assert main(["train", str(tmp_path / "d"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 class" in err and "--protocol anomaly" in err and "data split" in err
    assert not (tmp_path / "run").exists()


def test_existing_run_is_not_overwritten(trained_run, synth_root, capsys):
    assert main(["train", str(synth_root), "--out", str(trained_run)]) == 2
    assert "--resume" in capsys.readouterr().err


def cli(*args):
    return [sys.executable, "-m", "weldfusion", *args]


def test_ddp_on_two_cpu_processes_sharing_the_cache_fill(synth_root, tmp_path):
    """Each rank computes its share of the cache (no entry twice, none left out), equal to a one-process fill."""
    logs = tmp_path / "logs"
    logs.mkdir()
    result = subprocess.run([sys.executable, str(Path(__file__).parent / "ddp_probe.py"), str(logs), "train", str(synth_root),
                             "--out", str(tmp_path / "ddp"), "--devices", "2", "--accelerator", "cpu",
                             "--set", "train.epochs=1", "--set", f"cache.dir={tmp_path / 'cache'}", "--set", "data.num_workers=0"],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ddp" / "model" / "model.safetensors").is_file()
    assert len(rows(tmp_path / "ddp" / "logs" / "metrics.csv")) == 1
    shares = [set((logs / f"rank-{rank}.txt").read_text().splitlines()) for rank in (0, 1)]
    config = load_config("cpu", [f"cache.dir={tmp_path / 'single'}", "data.num_workers=0"])
    samples, _ = build_samples(synth_root, read_manifest(synth_root / "manifest.csv"))
    modalities = ["video", "images", "audio"]
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert shares[0] | shares[1] == {f"{m} {s.key}" for m in modalities for s in samples}
    transforms = build_transforms(config)
    single, shared = open_stores(config, transforms), open_stores(config.copy_with([f"cache.dir={tmp_path / 'cache'}"]), transforms)
    fill_cache(samples, config, transforms, single)
    for m in modalities:
        for s in samples:
            a, b = single[m].load(s), shared[m].load(s)
            assert torch.equal(a.tokens, b.tokens) and torch.equal(a.valid, b.valid) and a.problem == b.problem, (m, s.key)


def test_debug_reports_batches_and_gradients(synth_root, tmp_path, capsys):
    code = main(["diagnose", str(synth_root), "--set", f"cache.dir={tmp_path}", "--set", "data.num_workers=0"])
    output = capsys.readouterr().out
    assert code == 0
    for text in ("[debug] batch 0", "labels:", "positive", "tokens video", "inputs sensor", "trainable:",
                 "feature cache: video, images, audio", "gradients:", "gradient norm"):  # fmt: skip
        assert text in output, text


def test_flat_loss_monitor_names_the_causes():
    monitor = FlatLossMonitor(steps=5, tolerance=1e-3)
    flags = [monitor.update(3.4340, degenerate=True) for _ in range(5)]
    assert flags == [False] * 4 + [True]
    model = torch.nn.Linear(2, 2).requires_grad_(False)
    causes = " ".join(monitor.causes(model, lr=1e-9, grad_norm=0.0))
    assert "single-class" in causes and "no parameter is trainable" in causes and "learning rate is ~0" in causes
    moving = FlatLossMonitor(steps=5)
    assert not any(moving.update(3.0 - 0.1 * i, False) for i in range(10))


def test_warmup_then_cosine():
    f = warmup_cosine(1e-4, 1e-7, 1e-6, warmup_steps=10, total_steps=110)
    assert f(0) * 1e-4 == pytest.approx(1e-7)
    assert f(10) == pytest.approx(1.0)
    assert f(60) * 1e-4 == pytest.approx((1e-4 + 1e-6) / 2)
    assert f(110) * 1e-4 == pytest.approx(1e-6)
