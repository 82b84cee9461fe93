"""Arc audio: `<part>.flac`, AST's log-mel fbank on clips spread over the recording, AST (SPEC §2-3)."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from weldfusion.config import AudioData, Config, DataConfig
from weldfusion.data.readers import MIN_AUDIO_SECONDS, Decoded, check_duration, check_size, first_line, read_audio
from weldfusion.data.transforms import AudioTransform
from weldfusion.errors import ModalityError
from weldfusion.models.encoders import AudioEncoder
from weldfusion.models.preprocessing import audio_transform
from weldfusion.modalities.base import BackboneSpec


class Audio(BackboneSpec):
    name = "audio"
    extensions = (".flac",)
    encoder_class = AudioEncoder
    data_settings = AudioData

    def items(self, data: DataConfig) -> int:
        return data.audio.clips

    def build_transform(self, config: Config) -> AudioTransform:
        return audio_transform(config)

    def input_shape(self, data: DataConfig, transform: AudioTransform) -> tuple[int, ...]:
        return (data.audio.clips, transform.extractor.max_length, transform.extractor.num_mel_bins)

    def read(self, files: tuple[Path, ...], data: DataConfig, transform: AudioTransform) -> Decoded:
        decoded = read_audio(files[0], data.audio.sample_rate, data.audio.max_seconds, data.max_file_mb)
        decoded.span = transform.spans(len(decoded.value))
        decoded.value = transform(decoded.value)
        return decoded

    def probe(self, files: tuple[Path, ...], data: DataConfig, transform: AudioTransform) -> list[str]:
        check_size(files[0], data.max_file_mb)
        try:
            info = sf.info(str(files[0]))
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise ModalityError(files[0], f"not a readable audio file ({first_line(exc)})") from None
        if info.frames < MIN_AUDIO_SECONDS * info.samplerate:
            raise ModalityError(files[0], f"only {info.frames / info.samplerate:.3f} s of audio")
        check_duration(files[0], info.frames / max(info.samplerate, 1), data.audio.max_seconds)
        return []


    def transform_identity(self, transform: AudioTransform) -> dict:
        return {"extractor": transform.extractor.to_dict()}
