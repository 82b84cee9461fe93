"""Interrupted work, determinism and untrusted files: a kill at any moment loses nothing."""

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from weldfusion.cli.main import main
from weldfusion.config import load_config
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import build_samples
from weldfusion.evaluation.evaluate import evaluate_run
from weldfusion.models.cache import fill_cache, open_stores
from weldfusion.features import build_transforms
from weldfusion.engine import fit_run

EPOCHS = 6


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cli(*args):
    return [sys.executable, "-m", "weldfusion", *args]


def kill_group_when(process, ready, delay):
    deadline = time.time() + 300
    while not ready() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    cache = tmp_path_factory.mktemp("shared-cache")
    return ["--set", f"train.epochs={EPOCHS}", "--set", f"cache.dir={cache}", "--set", "train.patience=0"]


@pytest.fixture(scope="module")
def reference_run(synth_root, settings, tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    fit_run(run, synth_root, load_config("cpu", settings[1::2]), say=lambda *a: None)
    return run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_killed_at_random_points_resumes_to_the_same_result(synth_root, settings, reference_run, tmp_path, seed):
    run = tmp_path / "run"
    process = subprocess.Popen(cli("train", str(synth_root), "--out", str(run), *settings), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    after = 1 + seed % (EPOCHS - 2)  # epochs finished before the kill lands, somewhere inside the next one
    kill_group_when(process, lambda: (run / "logs" / "metrics.csv").is_file() and len(rows(run / "logs" / "metrics.csv")) >= after,
                    random.Random(seed).uniform(0.0, 0.3))  # fmt: skip
    assert len(rows(run / "logs" / "metrics.csv")) < EPOCHS, "the run finished before it could be killed"
    result = subprocess.run(cli("train", str(synth_root), "--out", str(run), "--resume"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed, expected = rows(run / "logs" / "metrics.csv"), rows(reference_run / "logs" / "metrics.csv")
    assert [r["epoch"] for r in resumed] == [str(e) for e in range(EPOCHS)]
    # CPU training is deterministic here: the resumed run equals the uninterrupted one exactly
    assert [(r["train_loss"], r["val_loss"]) for r in resumed] == [(r["train_loss"], r["val_loss"]) for r in expected]
    ours, theirs = load_file(str(run / "model" / "model.safetensors")), load_file(str(reference_run / "model" / "model.safetensors"))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


FILL = ("import sys; from weldfusion.config import load_config; from weldfusion.data.manifest import read_manifest; "
        "from weldfusion.data.samples import build_samples; from weldfusion.models.cache import fill_cache, open_stores; "
        "from weldfusion.features import build_transforms; "
        "c = load_config('cpu', [f'cache.dir={sys.argv[2]}', 'cache.batch_size=2', 'data.num_workers=0']); "
        "s, _ = build_samples(sys.argv[1], read_manifest(sys.argv[1] + '/manifest.csv')); t = build_transforms(c); "
        "fill_cache(s, c, t, open_stores(c, t, modalities=['video', 'images', 'audio']))")  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cache_fill_killed_at_random_points_completes_identically(synth_root, tmp_path, seed):
    config = load_config("cpu", [f"cache.dir={tmp_path / 'reference'}", "data.num_workers=0"])
    samples, _ = build_samples(synth_root, read_manifest(synth_root / "manifest.csv"))
    transforms = build_transforms(config)
    reference = open_stores(config, transforms, modalities=["video", "images", "audio"])
    fill_cache(samples, config, transforms, reference)
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", FILL, str(synth_root), str(killed_dir)], start_new_session=True)
    stored = random.Random(seed).randint(1, len(samples))  # entries written before the kill
    kill_group_when(process, lambda: killed_dir.exists() and sum(1 for _ in killed_dir.rglob("*.safetensors")) >= stored,
                    random.Random(seed).uniform(0.0, 0.2))  # fmt: skip
    config.cache.dir = str(killed_dir)
    killed = open_stores(config, transforms, modalities=["video", "images", "audio"])
    done_before = sum(c.has(s) for c in killed.values() for s in samples)
    assert done_before < 3 * len(samples), "the fill finished before it could be killed"
    computed = fill_cache(samples, config, transforms, killed)
    assert sum(computed.values()) == 3 * len(samples) - done_before  # it resumed where it stopped
    for modality in reference:
        for sample in samples:
            a, b = reference[modality].load(sample), killed[modality].load(sample)
            assert torch.equal(a.tokens, b.tokens) and torch.equal(a.valid, b.valid) and a.problem == b.problem


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("timestamp", "config", "data_root")}


def test_same_seed_same_metrics_bit_identical(synth_root, settings, reference_run, tmp_path):
    again = tmp_path / "again"
    fit_run(again, synth_root, load_config("cpu", settings[1::2]), say=lambda *a: None)
    first, second = evaluate_run(reference_run, "test").metrics, evaluate_run(again, "test").metrics
    assert json.dumps(comparable(first), sort_keys=True) == json.dumps(comparable(second), sort_keys=True)


class Exploit:
    """Unpickling this would run code (create a file): a checkpoint must never be loaded this way."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_checkpoint_is_not_executed(reference_run, synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    for name in ("config.yaml", "run.json"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes((reference_run / name).read_bytes())
    (run / "checkpoints").mkdir()
    marker = tmp_path / "pwned"
    torch.save({"payload": Exploit(str(marker))}, run / "checkpoints" / "last.ckpt")
    assert main(["train", str(synth_root), "--out", str(run), "--resume"]) == 2
    assert not marker.exists()
    assert "damaged or not a weldfusion checkpoint" in capsys.readouterr().err


def test_truncated_checkpoint_is_a_clear_error(reference_run, synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    assert main(["train", str(synth_root), "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "last.ckpt" in err


@pytest.mark.parametrize("damage", ["truncate_weights", "garbage_config", "wrong_tensor"])
def test_tampered_model_artefact_is_refused(reference_run, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    weights = run / "model" / "model.safetensors"
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:5000])
    elif damage == "garbage_config":
        (run / "model" / "config.json").write_text("{not json")
    else:
        state = load_file(str(weights))
        state["fusion.queries"] = torch.zeros(3, 3)
        save_file(state, str(weights))
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("model.safetensors" in err or "config.json" in err)
