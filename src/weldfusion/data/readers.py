"""Decode one modality file into a numpy array, or raise ModalityError naming the file and the problem.

Readers only decode, select and resample; encoder-specific preprocessing (resize, crop, normalise,
fbank) lives in `transforms`. Every reader is bounded in time and memory: file size is checked
before decoding and video decoding keeps only the frames it needs.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from math import gcd
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image, UnidentifiedImageError
from scipy.signal import resample_poly
from torch.utils.data import get_worker_info

from weldfusion.config import SensorData
from weldfusion.errors import ModalityError

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # a damaged video is our one line, not OpenCV's warnings

MIN_AUDIO_SECONDS = 0.1
MIN_SENSOR_ROWS = 2
DEFAULT_FPS = 30.0  # the real videos' rate, for a header without one
SENSOR_RATE = 8.6  # rows per second of the real logs, for a log without usable timestamps
TIME_FORMATS = ("%m-%d-%y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S.%f", "%m-%d-%y %H:%M:%S", "%m/%d/%Y %H:%M:%S")


@dataclass
class Decoded:
    value: np.ndarray
    notes: list[str] = field(default_factory=list)  # non-fatal findings, reported but not masked
    valid: np.ndarray | None = None  # per-item validity for multi-item modalities (image views)
    span: np.ndarray | None = None  # (items, 2): each item's start and end, seconds from the start of the recording


def check_size(path: Path, max_mb: int) -> None:
    size = path.stat().st_size
    if size == 0:
        raise ModalityError(path, "empty file (0 bytes)")
    if size > max_mb * 2**20:
        raise ModalityError(path, f"{size / 2**20:.0f} MiB exceeds the {max_mb} MiB bound (data.max_file_mb)")


def check_duration(path: Path, seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds:
        raise ModalityError(path, f"{seconds:.0f} s of audio exceeds the {max_seconds:.0f} s bound (data.audio.max_seconds)")


def evenly_spaced(count: int, wanted: int) -> np.ndarray:
    """`wanted` indices spread evenly over [0, count), first and last included (repeats if count < wanted)."""
    return np.linspace(0, count - 1, wanted).round().astype(int)


def decode_threads() -> int:
    """Decoder threads one reader call may use: every usable core in the main process (`predict`); 1 in
    a DataLoader worker, where the workers already share the cores. (OpenCV's own pool, used by resizing,
    is left alone: `cv2.setNumThreads` in a forked worker can hang on the parent's idle pool.)"""
    if get_worker_info() is not None:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def read_video(path: Path, frames: int, frame_transform: Callable[[np.ndarray], np.ndarray],
               max_frames: int = 20000, max_mb: int = 2048, *, seek: bool = True,
               threads: int | None = None) -> Decoded:  # fmt: skip
    """`frames` RGB frames sampled evenly over the clip, each passed through `frame_transform` at once.

    With `seek`, only the GOPs that hold the selected frames are decoded (`_decode_gops`, on `threads`
    threads, default `decode_threads()`). Where that cannot be exact or saves little (a truncated file,
    irregular packets, long GOPs) one sequential pass decodes them instead (`_decode_selected`: the reader
    as it was before seeking, also used with `seek=False`); both give identical frames (tested). Memory
    holds the selected frames, already transformed, and the compressed packets of their GOPs. A file
    shorter than its header claims is sampled again over the frames that really decode, and reported.
    """
    threads = threads or decode_threads()
    truncated = _sniff_avi(path, max_mb)
    count, fps = _header(path)
    if count > max_frames:
        raise ModalityError(path, f"header claims {count} frames, above the {max_frames} bound (data.max_video_frames)")
    if count <= 0:
        count = _count_decodable(path, max_frames, threads)
    indices = evenly_spaced(count, frames)
    selected = _decode_gops(path, indices, frame_transform, threads) if seek and not truncated else None
    if selected is not None:
        return Decoded(np.stack(selected), span=frame_span(indices, fps))
    selected, decoded = _decode_selected(path, indices, frame_transform, threads)
    notes = []
    if decoded < count:
        if decoded == 0:
            raise ModalityError(path, "no decodable frame (truncated or not a video)")
        notes.append(f"truncated: header says {count} frames, {decoded} decode; resampled over those")
        indices = evenly_spaced(decoded, frames)
        selected, _ = _decode_selected(path, indices, frame_transform, threads)
    return Decoded(np.stack(selected), notes, span=frame_span(indices, fps))


def _sniff_avi(path: Path, max_mb: int) -> str | None:
    """Size bound and AVI container check; a note when the file is shorter than its RIFF header says."""
    check_size(path, max_mb)
    with path.open("rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        raise ModalityError(path, f"not an AVI file (starts with {head[:8]!r})")
    declared, size = int.from_bytes(head[4:8], "little") + 8, path.stat().st_size
    return f"truncated: {size} of the {declared} bytes its AVI header declares" if size < declared else None


def _header(path: Path) -> tuple[int, float]:
    """Frame count and frame rate (DEFAULT_FPS where the header gives none) from the header."""
    capture = _open(path, threads=1)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), fps if 0 < fps < 1000 else DEFAULT_FPS
    finally:
        capture.release()


def frame_span(indices: np.ndarray, fps: float) -> np.ndarray:
    """(1, 2): from the first selected frame's start to the last one's end, in seconds."""
    return np.array([[indices[0] / fps, (indices[-1] + 1) / fps]])


def probe_video(path: Path, max_mb: int = 2048, max_frames: int = 20000) -> list[str]:
    """The cheap check of `data check`: size, container, frame bound, a first decodable frame; notes
    (truncation, 1 frame)."""
    note = _sniff_avi(path, max_mb)
    capture = _open(path, threads=1)
    try:
        if not capture.read()[0]:
            raise ModalityError(path, "no decodable frame (corrupt video)")
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    if frames > max_frames:
        raise ModalityError(path, f"header claims {frames} frames, above the {max_frames} bound (data.max_video_frames)")
    return [n for n in (note, "a single frame" if frames == 1 else None) if n]


def _open(path: Path, threads: int) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    if not capture.isOpened():
        raise ModalityError(path, "cannot be opened as a video (corrupt or not an AVI)")
    return capture


def _count_decodable(path: Path, max_frames: int, threads: int) -> int:
    capture = _open(path, threads)
    count = 0
    try:
        while count <= max_frames and capture.grab():
            count += 1
    finally:
        capture.release()
    if count > max_frames:
        raise ModalityError(path, f"more than {max_frames} frames (data.max_video_frames)")
    if count == 0:
        raise ModalityError(path, "no decodable frame")
    return count


def _decode_selected(path: Path, indices: np.ndarray, transform: Callable[[np.ndarray], np.ndarray],
                     threads: int) -> tuple[list[np.ndarray], int]:  # fmt: skip
    """Transformed frames at `indices` (in order, repeats allowed) and how many frames decoded, in one
    sequential pass (`grab` for skipped frames): frame k is the k-th frame the decoder gives."""
    capture = _open(path, threads)
    wanted: dict[int, np.ndarray] = {}
    targets = set(indices.tolist())
    last = int(indices.max())
    position = 0
    try:
        while position <= last and capture.grab():
            if position in targets:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    raise ModalityError(path, f"frame {position} does not decode")
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
                else:
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                wanted[position] = transform(frame)
            position += 1
    finally:
        capture.release()
    if len(wanted) < len(targets):
        return [], position
    return [wanted[i] for i in indices.tolist()], position


class _NotExact(Exception):
    """Packets do not map one to one onto the frames a sequential pass decodes: decode sequentially."""


def _decode_gops(path: Path, indices: np.ndarray, transform: Callable[[np.ndarray], np.ndarray],
                 threads: int) -> list[np.ndarray] | None:  # fmt: skip
    """Transformed frames at `indices`, decoding for each only its GOP from the keyframe through it.

    The packets are read once in order (cheap next to decoding), so no index or seek is trusted; their
    keyframe flags (for MPEG-4, the parser's reading of the bitstream) are checked by the decoder. None
    where this cannot give the frames of a sequential pass exactly, or would save little (`_gop_runs`,
    `_decode_runs`).
    """
    try:
        with av.open(str(path)) as container:
            runs = _gop_runs(container.demux(container.streams.video[0]), indices)
            if runs is None:
                return None
            parts = [runs[i::threads] for i in range(min(threads, len(runs)))]
            decoded: dict[int, np.ndarray] = {}
            with ThreadPoolExecutor(len(parts)) as pool:
                for part in pool.map(partial(_decode_runs, path, set(indices.tolist()), transform), parts):
                    decoded.update(part)
    except (_NotExact, av.FFmpegError, IndexError):  # IndexError: no video stream
        return None
    return [decoded[i] for i in indices.tolist()]


def _gop_runs(packets: Iterator[av.Packet], indices: np.ndarray) -> list[list[av.Packet]] | None:
    """Per GOP holding a selected frame, its packets from the keyframe through its last selected frame.

    Frame k must be packet k (an AVI's packets carry their frame number): None at an empty packet (a
    dropped frame, or the end of a file shorter than its header) or a packet out of order. None as well
    once the packets held would be more than half of the frames (long GOPs: the sequential pass, with the
    decoder's frame threads, is as fast), which also bounds the memory they take.
    """
    wanted, last = set(indices.tolist()), int(indices.max())
    runs: list[list[av.Packet]] = []
    gop: list[av.Packet] = []
    run: list[av.Packet] = []
    in_runs = 0  # packets of `runs`; `gop` holds the current GOP's, `run` its run (a prefix of `gop`)
    for k, packet in enumerate(packets):
        if packet.size == 0 or packet.pts != k:
            return None
        if packet.is_keyframe:
            gop, run = [], []
        gop.append(packet)
        if k in wanted:
            if not run:
                runs.append(run)
            in_runs += len(gop) - len(run)
            run.extend(gop[len(run) :])
        if 2 * (in_runs + len(gop) - len(run)) > last + 1:
            return None
        if k == last:
            return runs
    return None


def _decode_runs(path: Path, wanted: set[int], transform: Callable[[np.ndarray], np.ndarray],
                 runs: list[list[av.Packet]]) -> dict[int, np.ndarray]:  # fmt: skip
    """Decode each run from its keyframe with a decoder of its own file (single-threaded: the runs are
    the parallelism); every packet must give exactly its own frame, and a run must start on a keyframe."""
    out: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context
        codec.thread_count = 1
        for run in runs:
            codec.flush_buffers()
            for packet in run:
                frames = codec.decode(packet)
                if len(frames) != 1 or frames[0].pts != packet.pts or (packet is run[0] and not frames[0].key_frame):
                    raise _NotExact(f"packet {packet.pts}")
                if packet.pts in wanted:
                    out[packet.pts] = transform(frames[0].to_ndarray(format="rgb24"))  # same swscale conversion as OpenCV's
    return out


def read_images(paths: tuple[Path, ...], views: int, image_transform: Callable[[Image.Image], np.ndarray],
                min_size: int, max_mb: int = 2048) -> Decoded:  # fmt: skip
    """Up to `views` photos (sorted by name), each transformed, stacked, with a view-validity mask.

    A photo that does not decode is masked and reported; if none decodes the modality is unusable.
    Missing views are masked placeholders. JPEG draft mode decodes at the smallest scale that still
    covers `min_size` (the transform's resize target), which is most of the decoding cost saved.
    """
    notes = []
    if len(paths) > views:
        notes.append(f"{len(paths)} photos; using the first {views} by name")
    arrays: list[np.ndarray | None] = []
    for path in paths[:views]:
        try:
            check_size(path, max_mb)
            with Image.open(path) as image:
                if image.format != "JPEG":
                    notes.append(f"{path.name}: {image.format} image under a JPEG name")
                image.draft("RGB", (min_size, min_size))
                arrays.append(image_transform(image.convert("RGB")))
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, ModalityError) as exc:
            reason = exc.problem if isinstance(exc, ModalityError) else first_line(exc)
            notes.append(f"{path.name}: not a readable image ({reason}); view masked")
            arrays.append(None)
    valid = np.array([a is not None for a in arrays] + [False] * (views - len(arrays)))
    if not valid.any():
        first = f" ({notes[-len(arrays)]})" if arrays else ""
        raise ModalityError(paths[0].parent if paths else "images", f"no readable photo{first}")
    shape = next(a for a in arrays if a is not None).shape
    placeholder = np.zeros(shape, dtype=np.float32)  # masked by `valid`, never read by a model
    stacked = np.stack([a if a is not None else placeholder for a in arrays] + [placeholder] * (views - len(arrays)))
    return Decoded(stacked.astype(np.float32), notes, valid)


def read_audio(path: Path, sample_rate: int, max_seconds: float = 1200.0, max_mb: int = 2048) -> Decoded:
    """Mono float32 waveform at `sample_rate` (channels mixed down, resampled when needed)."""
    check_size(path, max_mb)
    try:
        info = sf.info(str(path))
        check_duration(path, info.frames / max(info.samplerate, 1), max_seconds)
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ModalityError(path, f"not a readable audio file ({first_line(exc)})") from None
    notes = []
    if info.format != "FLAC":
        notes.append(f"{info.format} audio under a .flac name; decoded as {info.format}")
    if wave.shape[1] > 1:
        notes.append(f"{wave.shape[1]} channels mixed to mono")
    wave = wave.mean(axis=1)
    if rate != sample_rate:
        notes.append(f"resampled from {rate} Hz to {sample_rate} Hz")
        g = gcd(rate, sample_rate)
        wave = resample_poly(wave, sample_rate // g, rate // g).astype(np.float32)
    if len(wave) < MIN_AUDIO_SECONDS * sample_rate:
        raise ModalityError(path, f"only {len(wave) / sample_rate:.3f} s of audio")
    if not np.isfinite(wave).all():
        raise ModalityError(path, "audio holds non-finite samples")
    if float(np.abs(wave).max()) == 0.0:
        notes.append("audio is digital silence")
    return Decoded(wave, notes)


def read_sensor(path: Path, settings: SensorData, max_mb: int = 2048) -> Decoded:
    """The named channels resampled to `settings.steps` rows, in raw units (standardisation comes later),
    and the span of seconds they cover (the arc-on rows' times, `row_times`).

    Empty, non-numeric, non-finite and out-of-bounds cells (`settings.limits`) are interpolated and
    reported. Size, fields per line and rows are bounded before pandas parses anything.
    """
    values, times, note = sensor_table(path, settings, max_mb)
    if len(values) < MIN_SENSOR_ROWS:
        raise ModalityError(path, f"only {len(values)} data row(s)")
    notes = []
    empty = int(values.isna().sum().sum())
    for channel in settings.channels:
        low, high = settings.limits.get(channel, (-np.inf, np.inf))
        values[channel] = values[channel].where(values[channel].between(low, high))  # inf and nan fall outside too
    broken = int(values.isna().sum().sum()) - empty
    if empty or broken:
        dead = [c for c in settings.channels if values[c].isna().all()]
        if dead:
            raise ModalityError(path, f"column(s) {', '.join(dead)} hold no number")
        if empty:
            notes.append(f"{empty} empty or non-numeric cell(s) interpolated")
        if broken:
            notes.append(f"{broken} non-finite or out-of-bounds cell(s) (data.sensor.limits) interpolated")
        values = values.interpolate(limit_direction="both")
    array = values.to_numpy(dtype=np.float64)
    notes += [note] if note else []
    first, last = 0, len(array) - 1
    if settings.crop_to_arc:
        on = np.flatnonzero(array[:, settings.channels.index(settings.current_channel)] > settings.arc_threshold)
        if len(on) >= MIN_SENSOR_ROWS:
            first, last = on[0], on[-1]
        else:
            notes.append(f"no arc-on rows ({settings.current_channel} never > {settings.arc_threshold:g}); whole log used")
    span = np.array([[times[first], times[last]]])
    return Decoded(resample_rows(array[first : last + 1], settings.steps).astype(np.float32), notes, span=span)


def sensor_table(path: Path, settings: SensorData, max_mb: int = 2048, default_rate: float = SENSOR_RATE,
                 ) -> tuple[pd.DataFrame, np.ndarray, str | None]:  # fmt: skip
    """The named channels of a sensor log as numbers (NaN where a cell is not one), each row's time in
    seconds and a note when the timestamps could not be used (`row_times`).

    Header whitespace is stripped and channels are selected by name; values are aligned to the header
    whatever the rows' trailing fields (a row with one field more than the header is a common export quirk).
    """
    check_size(path, min(max_mb, settings.max_mb))
    rows = csv_rows(path, settings.max_fields, settings.max_rows)
    header = [name.strip() for name in rows[0]]
    absent = [c for c in settings.channels if c not in header]
    if absent:
        raise ModalityError(path, f"missing column(s) {', '.join(absent)} (header: {','.join(rows[0])[:200]})")
    columns = [header.index(c) for c in settings.channels]
    kept = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    cells = [[row[i] if i < len(row) else "" for i in columns] for row in kept]
    values = pd.DataFrame(cells, columns=settings.channels, dtype=str).apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    return values, *row_times(header, kept, default_rate)


def row_times(header: list[str], rows: list[list[str]], default_rate: float = SENSOR_RATE) -> tuple[np.ndarray, str | None]:
    """Seconds from the first row: the Date and Time columns where (most of) them parse and they never
    go back, else the row index at the median interval of the timestamps (or at `default_rate`), with a note."""
    stamps = None
    if "Date" in header and "Time" in header:
        d, t = header.index("Date"), header.index("Time")
        text = pd.Series([f"{r[d].strip()} {r[t].strip()}" if max(d, t) < len(r) else "" for r in rows])
        parsed = max((pd.to_datetime(text, format=fmt, errors="coerce") for fmt in TIME_FORMATS), key=lambda p: p.notna().sum())
        ok = parsed.notna().to_numpy()
        if ok.sum() >= max(2, len(rows) // 2):  # a few unreadable stamps are interpolated by row index
            seconds = (parsed[ok] - parsed[ok].iloc[0]).dt.total_seconds().to_numpy()
            stamps = np.interp(np.arange(len(rows)), np.flatnonzero(ok), seconds)
    if stamps is not None and len(stamps) > 1 and np.all(np.diff(stamps) >= 0) and stamps[-1] > 0:
        return stamps, None
    steps = np.diff(stamps) if stamps is not None else np.zeros(0)
    interval = float(np.median(steps[steps > 0])) if (steps > 0).any() else 1 / default_rate
    why = "not monotonic" if stamps is not None else "missing or unreadable"
    return np.arange(len(rows)) * interval, f"timestamps {why}; times by row index at {1 / interval:.3g} rows/s"


def csv_rows(path: Path, max_fields: int, max_rows: int) -> list[list[str]]:
    """The file's rows as text cells (header first), within the field and row bounds."""
    rows: list[list[str]] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            for row in csv.reader(_bounded_lines(f, path)):
                if len(row) > max_fields:
                    raise ModalityError(path, f"line {len(rows) + 1} has {len(row)} fields, above the {max_fields} bound (data.sensor.max_fields)")
                rows.append(row)
                if len(rows) > max_rows + 1:
                    raise ModalityError(path, f"more than {max_rows} data rows (data.sensor.max_rows)")
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ModalityError(path, f"not a readable CSV ({first_line(exc)})") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ModalityError(path, "not a readable CSV (no header)")
    return rows


def _bounded_lines(lines: Iterable[str], path: Path, max_chars: int = 1 << 16) -> Iterator[str]:
    for line in lines:
        if len(line) > max_chars:
            raise ModalityError(path, f"a line longer than {max_chars} characters: not a sensor log")
        yield line


def resample_rows(array: np.ndarray, steps: int) -> np.ndarray:
    """Linear resampling of a (rows, channels) array to `steps` rows over the same span."""
    source = np.linspace(0.0, 1.0, len(array))
    target = np.linspace(0.0, 1.0, steps)
    return np.stack([np.interp(target, source, array[:, c]) for c in range(array.shape[1])], axis=1)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
