"""Each encoder's own preprocessing parameters, read from its checkpoint where present.

The checkpoint's processor file (`video_preprocessor_config.json` / `preprocessor_config.json`)
gives mean/std and sizes; the backbone config gives AST's mel bins and frames. An explicit
`data.<modality>.size` overrides the checkpoint's crop (SPEC uses 224 for V-JEPA 2, whose
checkpoint says 256). Without a checkpoint (random init) the real checkpoints' settings are used.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import ASTFeatureExtractor
from transformers.utils import cached_file

from weldfusion.config import Config, EncoderConfig
from weldfusion.data.transforms import AST_MEAN, AST_STD, IMAGENET_MEAN, IMAGENET_STD, AudioTransform, ImageTransform, ResizeCrop, Transforms
from weldfusion.models.backbones import backbone_config, source_kwargs


def processor_settings(spec: EncoderConfig, names: tuple[str, ...]) -> dict:
    """The first processor file found in the checkpoint (local folder or hub cache), else {}."""
    if spec.pretrained is None:
        return {}
    for name in names:
        path = cached_file(spec.pretrained, name, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False, **source_kwargs(spec.pretrained))  # fmt: skip
        if path:
            return json.loads(Path(path).read_text(encoding="utf-8"))
    return {}


def _size(value: object) -> int | None:
    if isinstance(value, dict):
        return value.get("height") or value.get("shortest_edge")
    return int(value) if isinstance(value, (int, float)) else None


def resize_crop(settings: dict, crop: int | None, default_crop: int) -> ResizeCrop:
    """The checkpoint's resize/crop/mean/std; an explicit crop rescales the resize edge accordingly."""
    stats = {"mean": tuple(settings.get("image_mean", IMAGENET_MEAN)), "std": tuple(settings.get("image_std", IMAGENET_STD))}
    checkpoint_crop = _size(settings.get("crop_size"))
    short_edge = _size(settings.get("size"))
    if crop is None and checkpoint_crop and short_edge:
        return ResizeCrop(short_edge, checkpoint_crop, **stats)
    return ResizeCrop.for_crop(crop or checkpoint_crop or default_crop, **stats)


def build_transforms(config: Config) -> Transforms:
    d, m = config.data, config.model
    processor_files = ("video_preprocessor_config.json", "preprocessor_config.json")
    video_arch = backbone_config("video", m.video, offline_ok=True)
    audio_arch = backbone_config("audio", m.audio, offline_ok=True)
    audio_settings = processor_settings(m.audio, ("preprocessor_config.json",))
    extractor = ASTFeatureExtractor(
        num_mel_bins=audio_arch.num_mel_bins, max_length=audio_arch.max_length, sampling_rate=d.audio.sample_rate,
        mean=audio_settings.get("mean", AST_MEAN), std=audio_settings.get("std", AST_STD),
    )  # fmt: skip
    return Transforms(
        video=resize_crop(processor_settings(m.video, processor_files), d.video.size, video_arch.crop_size),
        # DINOv2's processor crops 224 (its config's image_size, 518, is the pretraining grid, not the input size)
        images=ImageTransform(resize_crop(processor_settings(m.images, processor_files[1:]), d.images.size, 224),
                              d.images.tag_box),  # fmt: skip
        audio=AudioTransform(extractor, d.audio.clips),
    )
