"""Test videos: MPEG-4 Part 2 AVIs written with PyAV (any GOP length, B-frames, colour), and edits of
their indexes (FFmpeg's AVI muxer writes an OpenDML index, `indx` + `ix00`, beside the legacy `idx1`)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

AVIIF_KEYFRAME = 0x10
ODML_DELTA_FRAME = 0x80000000  # bit 31 of an ix00 entry's size: not a keyframe


def moving_texture(count: int, size: tuple[int, int], colour: bool, seed: int = 0) -> Iterator[np.ndarray]:
    """RGB frames of a blocky random texture sliding 2 pixels per frame (so P-frames carry real motion)."""
    width, height = size
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    base = base[:height, :width] if colour else np.repeat(base[:height, :width, :1], 3, axis=2)
    for i in range(count):
        yield np.roll(base, 2 * i, axis=1)


def write_mpeg4(path: Path, frames: int = 300, gop: int = 12, size: tuple[int, int] = (96, 64), b_frames: int = 0,
                colour: bool = False, fps: int = 30) -> Path:  # fmt: skip
    """An AVI with FourCC FMP4, a keyframe every `gop` frames and no scene-cut keyframes in between."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps, options={"sc_threshold": "1000000000"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = b_frames
        for image in moving_texture(frames, size, colour):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def chunks(data: bytes | bytearray, start: int = 12, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(fourcc, offset of its payload, payload size) of every RIFF chunk, LIST contents included."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        tag, size = bytes(data[start : start + 4]), struct.unpack_from("<I", data, start + 4)[0]
        yield tag, start + 8, size
        if tag == b"LIST":
            yield from chunks(data, start + 12, min(start + 8 + size, end))
        start += 8 + size + (size & 1)


def edit_chunks(path: Path, tags: set[bytes], edit) -> Path:
    """Apply `edit(data, payload_offset, payload_size, tag)` to every chunk whose fourcc is in `tags`."""
    data = bytearray(path.read_bytes())
    for tag, offset, size in list(chunks(data)):
        if tag in tags:
            edit(data, offset, size, tag)
    path.write_bytes(data)
    return path


def _all_keyframes(data: bytearray, offset: int, size: int, tag: bytes) -> None:
    if tag == b"idx1":  # entries: chunk id, flags, offset, size
        for entry in range(offset, offset + size, 16):
            struct.pack_into("<I", data, entry + 4, struct.unpack_from("<I", data, entry + 4)[0] | AVIIF_KEYFRAME)
        return
    longs, _, _, used = struct.unpack_from("<HBBI", data, offset)  # ix00: 24-byte header, then (offset, size)
    for entry in range(offset + 24, offset + 24 + 4 * longs * used, 4 * longs):
        struct.pack_into("<I", data, entry + 4, struct.unpack_from("<I", data, entry + 4)[0] & ~ODML_DELTA_FRAME)


def claim_every_frame_a_keyframe(path: Path) -> Path:
    """An index that lies: every frame flagged as a keyframe, though only every GOP's first is one."""
    return edit_chunks(path, {b"idx1", b"ix00"}, _all_keyframes)


def drop_indexes(path: Path) -> Path:
    """No index at all: idx1, indx and ix00 renamed to JUNK (which readers skip)."""
    return edit_chunks(path, {b"idx1", b"indx", b"ix00"}, lambda data, offset, size, tag: data.__setitem__(slice(offset - 8, offset - 4), b"JUNK"))


def claim_frames(path: Path, count: int) -> Path:
    """The stream header (strh dwLength) claims `count` frames."""
    return edit_chunks(path, {b"strh"}, lambda data, offset, size, tag: struct.pack_into("<I", data, offset + 32, count))
