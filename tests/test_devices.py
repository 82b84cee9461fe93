"""The accelerator path without an accelerator: training step, cache fill, embedding and prediction on
the fake accelerator (tests/fake_accelerator.py) compute what they compute on the CPU; device choice,
autocast and the per-entry cache lock."""

import copy
import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from lightning.pytorch.utilities import move_data_to_device
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from weldfusion.cli.main import main
from weldfusion.data.dataset import WeldDataset
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import build_samples
from weldfusion.evaluation.predict import predict
from weldfusion.features import build_transforms
from weldfusion.models.cache import CachedDataset, Entry, FeatureCache, fill_cache, open_stores
from weldfusion.models.devices import autocast, resolve_device
from weldfusion.models.inference import embed
from weldfusion.models.model import WeldFusionModel
from weldfusion.training.module import WeldFusionModule
from tests.conftest import tiny_config
from tests.fake_accelerator import CPU, fake_accelerator

CACHED = ["video", "images", "audio"]


@pytest.fixture(scope="module")
def welds(synth_root, tiny_checkpoints, tmp_path_factory):
    """Tiny encoders, 2 train welds of each of 4 classes, their cache filled on the CPU."""
    config = tiny_config(tiny_checkpoints, **{"cache.dir": str(tmp_path_factory.mktemp("cache")), "data.num_workers": 0,
                                               "train.scheduler": "none", "train.modality_dropout": 0.5,
                                               "train.token_dropout": 0.3})  # fmt: skip
    samples, _ = build_samples(synth_root, read_manifest(synth_root / "manifest.csv"))
    labels = sorted({s.label for s in samples})[:4]
    chosen = [s for label in labels for s in [s for s in samples if s.label == label and s.split == "train"][:2]]
    transforms = build_transforms(config)
    stores = open_stores(config, transforms)
    fill_cache(chosen, config, transforms, stores)
    dataset = CachedDataset(WeldDataset(chosen, ["sensor"], config.data, transforms), stores)
    return config, chosen, transforms, dataset


def test_the_fake_accelerator_refuses_a_cpu_tensor_as_a_gpu_does():
    with fake_accelerator() as device:
        x = torch.ones(3, 4).to(device)
        assert x.device == device and float((x * 2).sum()) == 24.0
        with pytest.raises(RuntimeError, match="found at least two devices"):
            _ = x + torch.rand(3, 4)  # created without device=
        assert (x + torch.rand(3, 4, device=x.device)).device == device
        with pytest.raises(RuntimeError):
            x.numpy()  # without .cpu()


def one_training_step(module: WeldFusionModule, batch: dict, device: torch.device) -> tuple[float, dict]:
    """What Lightning does for one step: batch to the device, training_step, backward, clip norm, step."""
    module.to(device)
    optimizer = module.configure_optimizers()["optimizer"]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        loss = module.training_step(move_data_to_device(batch, device), 0)
        loss.backward()
        module.on_before_optimizer_step(optimizer)
    optimizer.step()
    return float(loss.detach()), {k: v.detach().cpu() for k, v in module.state_dict().items()}


def test_training_step_on_an_accelerator(welds):
    config, _, _, dataset = welds
    batch = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    module = WeldFusionModule(config.to_dict(), CACHED)
    expected = one_training_step(copy.deepcopy(module), batch, CPU)
    with fake_accelerator() as device:
        loss, state = one_training_step(module, batch, device)
    assert loss == expected[0] and loss > 0  # modality and token dropout drew the same numbers
    assert all(torch.equal(state[k], v) for k, v in expected[1].items())


def test_cache_fill_on_an_accelerator(welds):
    config, samples, transforms, _ = welds
    on_cpu, on_device = open_stores(config, transforms, persistent=False), open_stores(config, transforms, persistent=False)
    fill_cache(samples, config, transforms, on_cpu)
    with fake_accelerator() as device:
        assert fill_cache(samples, config, transforms, on_device, device) == {m: len(samples) for m in CACHED}
    for modality in CACHED:
        for sample in samples:
            expected, got = on_cpu[modality].load(sample), on_device[modality].load(sample)
            assert type(got[0]) is torch.Tensor and got[0].device == CPU
            assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1]) and got[2] == expected[2]


def test_evaluation_embedding_on_an_accelerator(welds):
    config, _, _, dataset = welds
    model = WeldFusionModel(config, cached=set(CACHED))
    expected = embed(copy.deepcopy(model), dataset, batch_size=3)
    with fake_accelerator() as device:
        got = embed(model.to(device), dataset, batch_size=3, hide="video")
        unhidden = embed(model, dataset, batch_size=3)
    # attention's fused CPU kernels serve plain CPU tensors only: the same numbers up to rounding
    assert got.embeddings.device == CPU and torch.allclose(unhidden.embeddings, expected.embeddings, atol=1e-6)
    assert torch.equal(unhidden.usable, expected.usable) and unhidden.keys == expected.keys
    assert all(torch.allclose(unhidden.contribution[m], v, atol=1e-6) for m, v in expected.contribution.items())


@pytest.mark.parametrize("run", ["trained_run", "official_run"])
def test_prediction_on_an_accelerator(run, synth_root, request):
    folders = sorted(p for p in synth_root.iterdir() if p.is_dir())[:3]
    folders = [next(p for p in folder.rglob("*") if p.is_dir() and any(p.glob("*.avi"))) for folder in folders]
    run_folder = request.getfixturevalue(run)
    expected = [p.to_dict() for p in predict(run_folder, folders, device=CPU)]
    with fake_accelerator() as device:
        got = [p.to_dict() for p in predict(run_folder, folders, device=device)]
    assert all(p["decision"] for p in got) and close(got, expected)


def close(a: object, b: object, tolerance: float = 2e-4) -> bool:
    """Equal JSON-like values, floats (rounded to 4 digits by predict) within `tolerance`."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, tolerance) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tolerance
    return a == b


def test_device_choice():
    assert resolve_device("cpu", 2) == CPU
    if not torch.cuda.is_available():
        assert resolve_device("auto") == CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("option", [["--accelerator", "gpu"], ["--devices", "0"]])
def test_impossible_devices_are_one_line_errors(option, synth_root, tmp_path, capsys):
    assert main(["train", str(synth_root), "--out", str(tmp_path / "run"), *option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option[0] in err and not (tmp_path / "run").exists()


def test_autocast_dtype_follows_the_device(monkeypatch):
    assert autocast(CPU, True).fast_dtype == torch.bfloat16
    assert not hasattr(autocast(CPU, False), "fast_dtype")  # cache.autocast: false
    assert not hasattr(autocast(torch.device("meta"), True), "fast_dtype")  # no autocast on that device
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available" on a CPU-only machine
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        assert autocast(torch.device("cuda"), True).fast_dtype == torch.bfloat16
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a T4 or V100
        assert autocast(torch.device("cuda"), True).fast_dtype == torch.float16


def test_a_second_writer_of_one_entry_waits_and_keeps_the_first(welds, tmp_path):
    sample = welds[1][0]
    cache = FeatureCache(tmp_path, "video", {"test": 1})
    path, valid = cache.path(sample), torch.ones(4, dtype=torch.bool)
    (cache.folder / ".locks").mkdir(parents=True)
    with FileLock(cache.folder / ".locks" / f"{path.stem}.lock"):  # another process holds the entry
        entry = Entry(torch.ones(4, 2), valid, "", (4, 1, 1), torch.zeros(1, 2))
        writer = threading.Thread(target=cache.store, args=(sample, entry))
        writer.start()
        save_file({"tokens": torch.zeros(4, 2, dtype=torch.float16), "valid": valid.to(torch.uint8),
                   "grid": torch.tensor([4, 1, 1]), "span": torch.zeros(1, 2)}, str(path),
                  metadata={"sample": sample.key, "problem": ""})  # fmt: skip
    writer.join()
    assert torch.equal(cache.load(sample).tokens, torch.zeros(4, 2, dtype=torch.float16))


GPU_CHECK = Path(__file__).parent.parent / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_without_a_gpu_says_so_in_one_line():
    result = subprocess.run([sys.executable, str(GPU_CHECK)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.count("\n") == 1 and "no CUDA GPU" in result.stdout


def test_gpu_check_smoke_run_goes_through_every_step():
    result = subprocess.run([sys.executable, str(GPU_CHECK), "--smoke", "--per-class", "4", "--seconds", "1", "--epochs", "1",
                             "--predict", "2"], capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.splitlines()[-1])["gpu_check"]
    assert set(figures["fill"]) == {"video", "images", "audio", "all"} and figures["train"]["step_s"] > 0
    assert figures["predict"]["welds"] == 2 and figures["evaluate"]["seconds"] > 0
