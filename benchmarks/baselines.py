"""Baselines the benchmarks measure against, kept callable here only.

- `todays_readers()`: the readers as they were before issue 13 — video decoded sequentially
  (`read_video(seek=False)`, the reader's own fallback) and the numpy fbank below.
- `numpy_fbank`: the AudioTransform before issue 13 (transformers' batched numpy spectrogram, a Python
  loop over frames); tests/test_fbank.py also checks the torch fbank against it.
- `decoder_only`: the decoders alone, the honest limit of a reader.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from unittest.mock import patch

import av
import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image
from transformers.audio_utils import spectrogram_batch

from weldfusion.modalities import video as video_spec
from weldfusion.data.readers import read_video
from weldfusion.data.transforms import FBANK_HOP, FBANK_WINDOW, AudioTransform


def numpy_fbank(transform: AudioTransform, wave: np.ndarray) -> np.ndarray:
    """AudioTransform.__call__ before issue 13 (needs the extractor built without torchaudio)."""
    ex = transform.extractor
    starts = np.linspace(0, max(len(wave) - transform.window, 0), transform.clips).round().astype(int)
    fbanks = spectrogram_batch(
        [wave[s : s + transform.window] for s in starts], ex.window, frame_length=FBANK_WINDOW, hop_length=FBANK_HOP,
        fft_length=512, power=2.0, center=False, preemphasis=0.97, mel_filters=ex.mel_filters, log_mel="log",
        mel_floor=1.192092955078125e-07, remove_dc_offset=True,
    )  # fmt: skip
    out = np.zeros((transform.clips, ex.max_length, ex.num_mel_bins), np.float32)
    for i, fbank in enumerate(fbanks):
        out[i, : fbank.shape[1]] = fbank.T[: ex.max_length]
    return ex.normalize(out).astype(np.float32) if ex.do_normalize else out


@contextmanager
def todays_readers() -> Iterator[None]:
    """`decode_modality` / `WeldDataset` as before issue 13 (forked DataLoader workers inherit it)."""
    with patch.object(video_spec, "read_video", partial(read_video, seek=False)), patch.object(AudioTransform, "__call__", numpy_fbank):
        yield


def decode_video(path: Path, threads: int) -> int:
    """PyAV decoding every frame, no colour conversion; frame threads when `threads` > 1."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        stream.thread_type = "FRAME" if threads > 1 else "SLICE"
        return sum(1 for _ in container.decode(stream))


def ffmpeg_null(path: Path, threads: int) -> None:
    """`ffmpeg -i X -f null -`: FFmpeg's own demux + decode, nothing else."""
    subprocess.run(["ffmpeg", "-v", "error", "-threads", str(threads), "-i", str(path), "-f", "null", "-"], check=True)


def has_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def decoder_only(files: tuple[Path, ...], modality: str, min_size: int, threads: int) -> None:
    """The decoders alone: every video frame (PyAV, no conversion), each photo at the JPEG draft scale
    the reader needs (Pillow), the FLAC (soundfile), the CSV (pandas)."""
    if modality == "video":
        decode_video(files[0], threads)
    elif modality == "images":
        for path in files:
            with Image.open(path) as image:
                image.draft("RGB", (min_size, min_size))
                image.load()
    elif modality == "audio":
        sf.read(str(files[0]), dtype="float32")
    else:
        pd.read_csv(files[0])
