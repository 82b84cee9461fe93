"""The GOP-selective video reader gives exactly the frames of the sequential reader it replaced
(`read_video(..., seek=False)`), on every kind of file, and falls back to it where it must."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import weldfusion.data.readers as readers
from weldfusion.data.readers import Decoded, evenly_spaced, read_video
from weldfusion.data.transforms import ResizeCrop
from weldfusion.synth.generate import plan, write_weld
from tests.videos import claim_every_frame_a_keyframe, claim_frames, drop_indexes, write_mpeg4


def identity(frame: np.ndarray) -> np.ndarray:
    return frame


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the sequential reader was called for (the GOP path's fallback)."""
    calls: list[Path] = []
    original = readers._decode_selected

    def spy(path: Path, *args, **kwargs):
        calls.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(readers, "_decode_selected", spy)
    return calls


def read_both(path: Path, frames: int, fallbacks: list[Path], transform=identity) -> tuple[Decoded, bool]:
    """The reader's result, asserted identical to the sequential reader's; and whether it fell back."""
    fallbacks.clear()
    ours = read_video(path, frames, transform)
    fell_back = bool(fallbacks)
    sequential = read_video(path, frames, transform, seek=False)
    assert np.array_equal(ours.value, sequential.value)
    assert ours.notes == sequential.notes
    return ours, fell_back


@pytest.mark.parametrize("gop,fell_back", [(1, False), (12, False), (50, True), (250, True), (100_000, True)])
def test_gop_lengths(tmp_path, fallbacks, gop, fell_back):
    """Short GOPs take the GOP path; long ones (a keyframe every 50, 250, or only the first) the sequential one."""
    path = write_mpeg4(tmp_path / "v.avi", frames=300, gop=gop)
    decoded, used_fallback = read_both(path, 8, fallbacks)
    assert decoded.value.shape == (8, 64, 96, 3) and decoded.notes == []
    assert used_fallback == fell_back


def test_colour_and_full_preset_transform(tmp_path, fallbacks):
    path = write_mpeg4(tmp_path / "v.avi", frames=400, gop=12, size=(320, 200), colour=True)
    decoded, fell_back = read_both(path, 16, fallbacks, ResizeCrop.for_crop(224).frame)
    assert decoded.value.shape == (16, 224, 224, 3) and not fell_back


@pytest.mark.parametrize("frames,fell_back", [(4, False), (16, True)])
def test_synthetic_small_welds(synth_root, fallbacks, frames, fell_back):
    """2 s welds (~60 frames): 4 frames take the GOP path, 16 need most GOPs and take the sequential one."""
    for path in sorted(synth_root.glob("*/*/*.avi"))[:6]:
        assert read_both(path, frames, fallbacks)[1] == fell_back


@pytest.fixture(scope="module")
def real_size_welds(tmp_path_factory) -> list[Path]:
    """Two welds as `synthesize(..., size="real")` writes them (a Good one, a Burnthrough with its glow),
    written one by one: the whole dataset's 65 photos of 2000x900 would cost most of a minute."""
    root = tmp_path_factory.mktemp("real")
    welds = plan(per_class=1, seconds=6.0, size="real", seed=3)
    for weld in (welds[0], next(w for w in welds if w.label == 2)):
        write_weld(root, weld)
    return sorted(root.glob("*/*/*.avi"))


def test_synthetic_real_size_welds(real_size_welds, fallbacks):
    """960x600 FMP4 written by the generator (OpenCV's writer, as the real files): identical frames."""
    transform = ResizeCrop.for_crop(224).frame
    for path in real_size_welds:
        _, fell_back = read_both(path, 8, fallbacks, transform)
        assert not fell_back
        read_both(path, 32, fallbacks, transform)


def test_truncated_file_is_resampled_like_before(tmp_path, fallbacks):
    path = write_mpeg4(tmp_path / "v.avi", frames=300, gop=12)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    decoded, fell_back = read_both(path, 8, fallbacks)
    assert fell_back and "truncated: header says 300 frames" in decoded.notes[0]


def test_header_claiming_more_frames_than_the_file_holds(tmp_path, fallbacks):
    path = claim_frames(write_mpeg4(tmp_path / "v.avi", frames=300, gop=12), 400)
    decoded, fell_back = read_both(path, 8, fallbacks)
    assert fell_back and decoded.notes == ["truncated: header says 400 frames, 300 decode; resampled over those"]


@pytest.mark.parametrize("edit", [claim_every_frame_a_keyframe, drop_indexes])
def test_index_is_not_trusted(tmp_path, fallbacks, edit):
    """Keyframes come from the bitstream, not from the index: a lying or missing index changes nothing."""
    path = edit(write_mpeg4(tmp_path / "v.avi", frames=300, gop=12))
    _, fell_back = read_both(path, 8, fallbacks)
    assert not fell_back


def test_b_frames_fall_back(tmp_path, fallbacks):
    """With B-frames packet k is not frame k: the sequential reader decodes them."""
    path = write_mpeg4(tmp_path / "v.avi", frames=300, gop=12, b_frames=2)
    _, fell_back = read_both(path, 8, fallbacks)
    assert fell_back


def test_a_run_must_start_on_a_keyframe(tmp_path):
    """The guard against a packet wrongly flagged as a keyframe: decoding from it is refused."""
    path = write_mpeg4(tmp_path / "v.avi", frames=30, gop=12)
    with av.open(str(path)) as container:
        packets = list(container.demux(container.streams.video[0]))
    assert readers._decode_runs(path, {13}, identity, [packets[12:14]])[13].shape == (64, 96, 3)
    with pytest.raises(readers._NotExact):
        readers._decode_runs(path, {14}, identity, [packets[13:15]])


def test_threads_do_not_change_frames(tmp_path):
    path = write_mpeg4(tmp_path / "v.avi", frames=300, gop=12)
    one, three = (read_video(path, 16, identity, threads=n).value for n in (1, 3))
    assert np.array_equal(one, three)
    every = read_video(path, 300, identity, seek=False).value  # and they are the evenly spaced frames
    assert np.array_equal(one, every[evenly_spaced(300, 16)])
