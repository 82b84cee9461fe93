"""In-process video: `<part>.avi`, 32 frames sampled over the weld, V-JEPA 2 (SPEC §2-3)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from weldfusion.config import Config, DataConfig, VideoData
from weldfusion.data.readers import Decoded, probe_video, read_video
from weldfusion.data.transforms import ResizeCrop
from weldfusion.models.encoders import VideoEncoder
from weldfusion.models.preprocessing import video_transform
from weldfusion.modalities.base import BackboneSpec


class Video(BackboneSpec):
    name = "video"
    extensions = (".avi",)
    encoder_class = VideoEncoder
    data_settings = VideoData

    def build_transform(self, config: Config) -> ResizeCrop:
        return video_transform(config)

    def input_shape(self, data: DataConfig, transform: ResizeCrop) -> tuple[int, ...]:
        return (data.video.frames, 3, *transform.shape)

    def read(self, files: tuple[Path, ...], data: DataConfig, transform: ResizeCrop) -> Decoded:
        d = data
        decoded = read_video(files[0], d.video.frames, transform.frame, d.max_video_frames, d.max_file_mb)
        decoded.value = transform.normalise(decoded.value)
        return decoded

    def probe(self, files: tuple[Path, ...], data: DataConfig, transform: ResizeCrop) -> list[str]:
        return probe_video(files[0], data.max_file_mb, data.max_video_frames)


    def transform_identity(self, transform: ResizeCrop) -> dict:
        return asdict(transform)
