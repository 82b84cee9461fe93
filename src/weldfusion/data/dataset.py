"""A weld's files -> per-modality arrays + validity masks; and the torch Dataset over a sample table.

A modality that is missing or does not decode becomes a masked placeholder (mask all False) with
its reason recorded; a model never reads a masked value. Notes (interpolated cells, truncated
video) are kept beside the data so reports can show them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from weldfusion.config import Config
from weldfusion.data.readers import Decoded, read_audio, read_images, read_sensor, read_video
from weldfusion.data.samples import Sample
from weldfusion.data.transforms import SensorStats, Transforms
from weldfusion.errors import ModalityError


@dataclass
class SampleInputs:
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # True = valid item (frame clip, view, clip, log)
    problems: dict[str, str] = field(default_factory=dict)  # modality -> why it is masked
    notes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return any(mask.any() for mask in self.masks.values())


def input_shapes(config: Config, transforms: Transforms) -> dict[str, tuple[int, ...]]:
    d = config.data
    image, audio = transforms.images.resize.crop, transforms.audio.extractor
    return {
        "video": (d.video.frames, 3, transforms.video.crop, transforms.video.crop),
        "images": (d.images.views, 3, image, image),
        "audio": (d.audio.clips, audio.max_length, audio.num_mel_bins),
        "sensor": (d.sensor.steps, len(d.sensor.channels)),
    }


def mask_length(config: Config, modality: str) -> int:
    return {"images": config.data.images.views, "audio": config.data.audio.clips}.get(modality, 1)


def decode_modality(sample: Sample, modality: str, config: Config, transforms: Transforms) -> Decoded:
    """Decode one available modality of a sample (ModalityError when it cannot be used)."""
    d = config.data
    files = sample.files[modality]
    if modality == "video":
        decoded = read_video(files[0], d.video.frames, transforms.video.frame, d.max_video_frames, d.max_file_mb)
        decoded.value = transforms.video.normalise(decoded.value)
    elif modality == "images":
        decoded = read_images(files, d.images.views, transforms.images, transforms.images.resize.short_edge, d.max_file_mb)
    elif modality == "audio":
        decoded = read_audio(files[0], d.audio.sample_rate, max_mb=d.max_file_mb)
        decoded.value = transforms.audio(decoded.value)
    else:
        s = d.sensor
        decoded = read_sensor(files[0], s.channels, s.steps, s.current_channel, s.arc_threshold, s.crop_to_arc,
                              d.max_file_mb)  # fmt: skip
    return decoded


def decode_sample(sample: Sample, modalities: list[str], config: Config, transforms: Transforms,
                  sensor_stats: SensorStats | None = None) -> SampleInputs:  # fmt: skip
    """All requested modalities of one sample; failures are masked with their reason, never zero-filled silently."""
    shapes = input_shapes(config, transforms)
    out = SampleInputs()
    for modality in modalities:
        length = mask_length(config, modality)
        try:
            if not sample.available(modality):
                raise ModalityError(sample.folder, sample.missing.get(modality, "not available"))
            decoded = decode_modality(sample, modality, config, transforms)
        except ModalityError as exc:
            out.arrays[modality] = np.zeros(shapes[modality], np.float32)
            out.masks[modality] = np.zeros(length, bool)
            out.problems[modality] = str(exc)
            continue
        value = decoded.value
        if modality == "sensor" and sensor_stats is not None:
            value = sensor_stats.apply(value)
        out.arrays[modality] = value
        out.masks[modality] = decoded.valid if decoded.valid is not None else np.ones(length, bool)
        if decoded.notes:
            out.notes[modality] = decoded.notes
    return out


class WeldDataset(Dataset):
    """Live decoding of a sample table: item = key, label, inputs/mask per modality, problems."""

    def __init__(self, samples: list[Sample], modalities: list[str], config: Config, transforms: Transforms,
                 sensor_stats: SensorStats | None = None):  # fmt: skip
        self.samples = samples
        self.modalities = modalities
        self.config = config
        self.transforms = transforms
        self.sensor_stats = sensor_stats

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        decoded = decode_sample(sample, self.modalities, self.config, self.transforms, self.sensor_stats)
        return {
            "index": index,
            "key": sample.key,
            "label": sample.label,
            "inputs": {m: torch.from_numpy(a) for m, a in decoded.arrays.items()},
            "mask": {m: torch.from_numpy(k) for m, k in decoded.masks.items()},
            "problems": {m: decoded.problems.get(m, "") for m in self.modalities},
        }
