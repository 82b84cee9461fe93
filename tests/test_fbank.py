"""The torch fbank of `AudioTransform` equals AST's own feature extractor and the numpy implementation
it replaced (`benchmarks/baselines.py`: transformers' `spectrogram_batch`), within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly
from transformers import ASTFeatureExtractor

from benchmarks.baselines import numpy_fbank
from weldfusion.data.transforms import AudioTransform

RATE = 16000
RNG = np.random.default_rng(0)
SECONDS = np.arange(36 * RATE) / RATE


def pcm16(x: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(x, -1, 1) * 32767) / 32767).astype(np.float32)


SIGNALS = {
    # arc-like: band-limited hiss (anti-aliased from 48 kHz), a short-circuit hum and crackle, 16-bit
    "weld-like": lambda: pcm16(resample_poly(RNG.normal(0, 0.1, 3 * len(SECONDS)), 1, 3)
                               + 0.2 * np.sin(2 * np.pi * 110 * SECONDS) + 0.5 * (RNG.random(len(SECONDS)) > 0.9995)),
    "pure tone": lambda: pcm16(0.3 * np.sin(2 * np.pi * 440 * SECONDS)),
    "DC offset": lambda: (0.5 + RNG.normal(0, 0.01, len(SECONDS))).astype(np.float32),
    "very quiet": lambda: RNG.normal(0, 1e-4, len(SECONDS)).astype(np.float32),
    "digital silence": lambda: np.zeros(len(SECONDS), np.float32),
    "3 s (padded)": lambda: RNG.normal(0, 0.1, 3 * RATE).astype(np.float32),
}  # fmt: skip


@pytest.mark.parametrize("bins,length,clips", [(128, 1024, 3), (64, 256, 2)])  # the full and cpu presets
@pytest.mark.parametrize("signal", list(SIGNALS))
def test_fbank_equals_ast_extractor_and_the_numpy_implementation(signal, bins, length, clips):
    extractor = ASTFeatureExtractor(num_mel_bins=bins, max_length=length)
    transform = AudioTransform(extractor, clips)
    wave = SIGNALS[signal]()
    ours = transform(wave)
    assert ours.shape == (clips, length, bins) and ours.dtype == np.float32
    starts = np.linspace(0, max(len(wave) - transform.window, 0), clips).round().astype(int)
    theirs = extractor([wave[s : s + transform.window] for s in starts], sampling_rate=RATE, return_tensors="np")["input_values"]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours, numpy_fbank(transform, wave), rtol=0, atol=1e-4)


def test_without_normalisation():
    transform = AudioTransform(ASTFeatureExtractor(num_mel_bins=64, max_length=100, do_normalize=False), clips=2)
    wave = SIGNALS["weld-like"]()[: 5 * RATE]
    np.testing.assert_allclose(transform(wave), numpy_fbank(transform, wave), rtol=0, atol=1e-4)
