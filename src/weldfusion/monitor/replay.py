"""Recorded welds replayed through the streaming API, as a live weld would arrive.

Video frames at the file's frame rate with their own timestamps (PyAV pts), audio in blocks of
`audio_block` seconds (soundfile), sensor rows at their CSV timestamps (by row index at the log's median
rate when the timestamps are unusable, e.g. not monotonic, as 32 real logs are). The three streams are
merged in the order their chunks would be complete; `speed` paces them against the wall clock (1: real
time) or not at all (None: as fast as possible). A file that fails mid-way ends its modality with a
problem event; the others go on.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf

from weldfusion.config import Config, SensorData
from weldfusion.data.readers import check_size, first_line, sensor_table
from weldfusion.data.samples import Sample
from weldfusion.errors import InputError, ModalityError
from weldfusion.monitor.session import Event, WeldSession

Chunk = tuple[float, int, str, Any]  # (time it is complete, tie-break, modality or "problem", payload)


def replay(session: WeldSession, sample: Sample, config: Config, speed: float | None = None,
           emit: Callable[[list[Event]], None] = lambda events: None) -> float:  # fmt: skip
    """Feed one weld's recordings to `session` (then `finish` it); returns the stream's duration in seconds."""
    for m, why in sample.missing.items():
        if m in session.streams:
            emit(session.report(m, f"not monitored in this weld: {why}", 0.0))
            session.drop(m)
    sources = [_guarded(m, SOURCES[m](sample.files[m][0], config)) for m in session.streams if sample.available(m)]
    start, end = time.monotonic(), 0.0
    for ready, _, kind, payload in heapq.merge(*sources, key=lambda chunk: (chunk[0], chunk[1])):
        if speed:
            time.sleep(max(0.0, start + ready / speed - time.monotonic()))
        end = max(end, ready)
        if kind == "problem":
            emit(session.report(*payload))
        elif kind == "audio":
            emit(session.audio(*payload))
        else:
            emit(getattr(session, kind)(ready, payload))
    emit(session.finish())
    return end


def video_chunks(path: Path, config: Config) -> Iterator[Chunk]:
    check_size(path, config.data.max_file_mb)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or 30)
        first = None
        for i, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else i / fps
            first = t if first is None else first
            yield (t - first, 0, "video", frame.to_ndarray(format="rgb24"))


def audio_chunks(path: Path, config: Config) -> Iterator[Chunk]:
    check_size(path, config.data.max_file_mb)
    with sf.SoundFile(str(path)) as f:
        rate, done = f.samplerate, 0
        for block in f.blocks(blocksize=max(1, int(config.monitor.audio_block * rate)), dtype="float32", always_2d=True):
            t0 = done / rate
            done += len(block)
            yield (done / rate, 1, "audio", (t0, block, rate))


def sensor_chunks(path: Path, config: Config) -> Iterator[Chunk]:
    settings = config.data.sensor
    times, values, note = sensor_log(path, settings, config.monitor.sensor_rate, config.data.max_file_mb)
    if note:
        yield (0.0, 2, "problem", ("sensor", note, 0.0))
    for t, row in zip(times, values):
        yield (float(t), 2, "sensor", row)


def sensor_log(path: Path, settings: SensorData, default_rate: float, max_mb: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Row times (seconds from the first row), the channels' values (NaN where a cell is not a number) and
    a note when the timestamps could not be used (the reader's `sensor_table`)."""
    values, times, note = sensor_table(path, settings, max_mb, default_rate)
    return times, values.to_numpy(np.float64), note or ""


SOURCES: dict[str, Callable[[Path, Config], Iterator[Chunk]]] = {"video": video_chunks, "audio": audio_chunks, "sensor": sensor_chunks}


def _guarded(modality: str, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """A reader's chunks; an error ends its modality with a problem chunk."""
    last = 0.0
    try:
        for chunk in chunks:
            last = chunk[0]
            yield chunk
    except (OSError, ValueError, RuntimeError, av.FFmpegError, sf.LibsndfileError, InputError) as exc:
        reason = exc.problem if isinstance(exc, ModalityError) else first_line(exc)
        yield (last, 3, "problem", (modality, f"stopped reading at {last:.2f} s: {reason}", last))
