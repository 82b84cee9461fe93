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
from weldfusion.data.transforms import AST_MEAN, AST_STD, IMAGENET_MEAN, IMAGENET_STD, AudioTransform, ImageTransform, ResizeCrop
from weldfusion.models.backbones import backbone_config, source_kwargs
from weldfusion.models.encoders import AudioEncoder, VideoEncoder


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


def resize_crop(settings: dict, crop: int | None, default_crop: int, width: int | None = None) -> ResizeCrop:
    """The checkpoint's resize/crop/mean/std; an explicit crop rescales the resize edge accordingly.
    With `width`, the whole image is resized to (crop, width) instead of centre-cropped."""
    stats = {"mean": tuple(settings.get("image_mean", IMAGENET_MEAN)), "std": tuple(settings.get("image_std", IMAGENET_STD)),
             "width": width}  # fmt: skip
    checkpoint_crop = _size(settings.get("crop_size"))
    short_edge = _size(settings.get("size"))
    if crop is None and checkpoint_crop and short_edge:
        return ResizeCrop(short_edge, checkpoint_crop, **stats)
    return ResizeCrop.for_crop(crop or checkpoint_crop or default_crop, **stats)


PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


def video_transform(config: Config) -> ResizeCrop:
    spec = config.model.video
    arch = backbone_config(VideoEncoder.backbone_classes, spec, offline_ok=True)
    return resize_crop(processor_settings(spec, PROCESSOR_FILES), config.data.video.size, arch.crop_size, config.data.video.width)


def image_transform(config: Config) -> ImageTransform:
    # DINOv2's processor crops 224 (its config's image_size, 518, is the pretraining grid, not the input size)
    resize = resize_crop(processor_settings(config.model.images, PROCESSOR_FILES[1:]), config.data.images.size, 224,
                         config.data.images.width)  # fmt: skip
    return ImageTransform(resize, config.data.images.tag_box)


def audio_transform(config: Config) -> AudioTransform:
    spec = config.model.audio
    arch = backbone_config(AudioEncoder.backbone_classes, spec, offline_ok=True)
    settings = processor_settings(spec, ("preprocessor_config.json",))
    extractor = ASTFeatureExtractor(
        num_mel_bins=arch.num_mel_bins, max_length=arch.max_length, sampling_rate=config.data.audio.sample_rate,
        mean=settings.get("mean", AST_MEAN), std=settings.get("std", AST_STD),
    )  # fmt: skip
    return AudioTransform(extractor, config.data.audio.clips)
