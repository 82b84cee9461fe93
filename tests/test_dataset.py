import json
import numpy as np
import torch
from torch.utils.data import DataLoader

from tests.conftest import BUILTIN as MODALITIES
from weldfusion.data.dataset import WeldDataset, decode_sample, input_shapes
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import build_samples
from weldfusion.data.transforms import ChannelStats
from weldfusion.features import build_transforms


def test_synthetic_weld_decodes_to_configured_shapes(synth_root, cpu_config):
    samples, _ = build_samples(synth_root, read_manifest(synth_root / "manifest.csv"))
    transforms = build_transforms(cpu_config)
    shapes = input_shapes(cpu_config.data, transforms)
    decoded = decode_sample(samples[0], list(MODALITIES), cpu_config.data, transforms)
    assert decoded.problems == {}
    for m in MODALITIES:
        assert decoded.arrays[m].shape == shapes[m], m
        assert decoded.masks[m].all(), m
        assert np.isfinite(decoded.arrays[m]).all()
    assert shapes["video"] == (16, 3, 64, 104) and shapes["images"] == (5, 3, 56, 128)  # whole frames and photos
    assert shapes["audio"] == (2, 256, 64) and shapes["sensor"] == (64, 6)


def test_broken_modalities_are_masked_with_reasons(corrupt_root, cpu_config):
    root, keys = corrupt_root["root"], corrupt_root["keys"]
    samples, _ = build_samples(root, read_manifest(root / "manifest.csv", require_split=False))
    by_key = {s.key: s for s in samples}
    transforms = build_transforms(cpu_config)

    def decode(name):
        return decode_sample(by_key[keys[name]], list(MODALITIES), cpu_config.data, transforms)

    flac = decode("missing_flac")
    assert not flac.masks["audio"].any() and "missing file" in flac.problems["audio"]
    assert flac.masks["video"].all() and flac.usable
    three = decode("three_images")
    assert three.masks["images"].tolist() == [True, True, True, False, False] and "images" not in three.problems
    nan = decode("nan_csv")
    assert nan.masks["sensor"].all() and "interpolated" in nan.notes["sensor"][0]
    gone = decode("all_missing")
    assert not gone.usable and set(gone.problems) == set(MODALITIES)
    truncated = decode("truncated_video")  # a third of the file: the frames that decode are sampled, and reported
    assert truncated.masks["video"].all() and "truncated" in truncated.notes["video"][0]


def test_torch_dataset_collates_and_standardises(synth_root, cpu_config):
    samples, _ = build_samples(synth_root, read_manifest(synth_root / "manifest.csv"))
    transforms = build_transforms(cpu_config)
    raw = [decode_sample(s, ["sensor"], cpu_config.data, transforms).arrays["sensor"] for s in samples[:10]]
    stats = ChannelStats.fit(cpu_config.data.sensor.channels, raw)
    loader = DataLoader(WeldDataset(samples[:10], list(MODALITIES), cpu_config.data, transforms, {"sensor": stats}), batch_size=5)
    batch = next(iter(loader))
    assert batch["inputs"]["video"].shape == (5, 16, 3, 64, 104)
    assert batch["mask"]["images"].dtype == torch.bool and batch["mask"]["images"].shape == (5, 5)
    sensor = torch.cat([b["inputs"]["sensor"] for b in loader])
    assert abs(float(sensor.mean())) < 0.05 and abs(float(sensor.std()) - 1) < 0.05
    assert batch["label"].dtype == torch.int64 and len(batch["key"]) == 5


def test_sensor_stats_round_trip(tmp_path):
    stats = ChannelStats.fit(["a", "b"], [np.array([[1.0, 2.0], [3.0, 6.0]])])
    assert ChannelStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    np.testing.assert_allclose(stats.apply(np.array([[2.0, 4.0]])), [[0.0, 0.0]])
