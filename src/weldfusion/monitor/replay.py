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
import pandas as pd
import soundfile as sf

from weldfusion.config import Config, SensorData
from weldfusion.data.readers import csv_rows, check_size, first_line
from weldfusion.data.samples import Sample, locate_files
from weldfusion.data.categories import GOOD
from weldfusion.errors import InputError, ModalityError
from weldfusion.monitor.session import Event, WeldSession

Chunk = tuple[float, int, str, Any]  # (time it is complete, tie-break, modality or "problem", payload)
TIME_FORMATS = ("%m-%d-%y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S.%f", "%m-%d-%y %H:%M:%S", "%m/%d/%Y %H:%M:%S")


def folder_weld(folder: Path, modalities: list[str]) -> Sample:
    """A weld folder as a sample of the monitored modalities; InputError (one line) when it has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory")
    files, missing = locate_files(folder, folder.name, tuple(modalities), within=folder.resolve())
    if not any(m in files and m not in missing for m in modalities):
        raise InputError(f"{folder}: nothing to monitor (" + "; ".join(f"{m}: {why}" for m, why in missing.items()) + ")")
    return Sample(key=str(folder), session="", label=GOOD, split=None, folder=folder, files=files, missing=missing)


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
    a note when the timestamps could not be used."""
    check_size(path, min(max_mb, settings.max_mb))
    rows = csv_rows(path, settings.max_fields, settings.max_rows)
    header = [name.strip() for name in rows[0]]
    absent = [c for c in [*settings.channels, "Date", "Time"] if c not in header]
    if any(c in settings.channels for c in absent):
        raise ModalityError(path, f"missing column(s) {', '.join(absent)} (header: {','.join(rows[0])[:200]})")
    body = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    cell = lambda row, name: row[header.index(name)].strip() if header.index(name) < len(row) else ""  # noqa: E731
    values = pd.DataFrame([[cell(r, c) for c in settings.channels] for r in body], dtype=str)
    values = values.apply(lambda col: pd.to_numeric(col, errors="coerce")).to_numpy(np.float64)
    stamps = None if absent else [f"{cell(r, 'Date')} {cell(r, 'Time')}" for r in body]
    times, note = row_times(stamps, len(body), default_rate)
    return times, values, note


def row_times(stamps: list[str] | None, count: int, default_rate: float) -> tuple[np.ndarray, str]:
    """Seconds from the first row; by row index at the median rate when the stamps are missing,
    unparsable or not strictly increasing."""
    parsed = None
    if stamps:
        for fmt in TIME_FORMATS:
            attempt = pd.to_datetime(pd.Series(stamps), format=fmt, errors="coerce")
            if attempt.notna().all():
                parsed = (attempt - attempt.iloc[0]).dt.total_seconds().to_numpy()
                break
    if parsed is not None and (len(parsed) < 2 or (np.diff(parsed) > 0).all()):
        return parsed, ""
    steps = np.diff(parsed) if parsed is not None else np.zeros(0)
    rate = 1.0 / float(np.median(steps[steps > 0])) if (steps > 0).sum() >= max(2, len(steps) // 2) else default_rate
    why = "not strictly increasing" if parsed is not None else "missing or unparsable"
    return np.arange(count) / rate, f"timestamps {why}: rows replayed by index at {rate:.2f} Hz"


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
