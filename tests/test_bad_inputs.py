"""The bad-input corpus: every damaged file or row ends in a specific message, a masked modality with
its reason, or a reported note; never a traceback, never a silent zero, never a hang."""

from __future__ import annotations

import io
import json
import os
import shutil
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from weldfusion import MODALITIES
from weldfusion.cli.main import main
from weldfusion.config import load_config
from weldfusion.data.dataset import decode_sample
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import Sample, locate_files
from weldfusion.models.preprocessing import build_transforms
from weldfusion.synth.generate import SENSOR_HEADER
from tests.conftest import copy_dataset, weld_folder
from tests.videos import claim_every_frame_a_keyframe, claim_frames, drop_indexes, write_mpeg4

# ---------------------------------------------------------------- one weld, one damaged file


def _truncate(path: Path, fraction: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])


def _video(folder: Path, frames: list[np.ndarray], fps: float = 30, fourcc: str = "MJPG") -> None:
    path = next(folder.glob("*.avi"))
    colour = frames[0].ndim == 3
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, frames[0].shape[1::-1], isColor=colour)
    for frame in frames:
        writer.write(frame)
    writer.release()


def _mpeg4(folder: Path, edit=lambda path: path, **options) -> None:
    """A 10 s FMP4 video with 12-frame GOPs (the GOP-selective reader's case), then `edit` applied to it."""
    edit(write_mpeg4(next(folder.glob("*.avi")), frames=300, size=(160, 100), **options))


def _audio(folder: Path, data: np.ndarray, rate: int) -> None:
    sf.write(next(folder.glob("*.flac")), data, rate, format="FLAC", subtype="PCM_16")


def _csv(folder: Path, edit) -> None:
    path = next(folder.glob("*.csv"))
    path.write_text(edit(path.read_text()), encoding="utf-8")


def _wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.sin(np.arange(16000) / 5) * 8000).astype(np.int16).tobytes())
    return buffer.getvalue()


def _png_as_jpg(folder: Path) -> None:
    target = sorted((folder / "images").glob("*.jpg"))[0]
    Image.new("RGB", (300, 120), (90, 90, 90)).save(target, format="PNG")


RNG = np.random.default_rng(0)

# name -> (how to damage the weld folder, modality, expected: "ok" | "note:<text>" | "masked:<text>")
CASES = {
    "video truncated": (lambda f: _truncate(next(f.glob("*.avi"))), "video", "note:truncated"),
    "video zero bytes": (lambda f: next(f.glob("*.avi")).write_bytes(b""), "video", "masked:empty"),
    "video is a JPEG": (lambda f: next(f.glob("*.avi")).write_bytes(sorted((f / "images").glob("*.jpg"))[0].read_bytes()), "video", "masked:.avi"),
    "video is text": (lambda f: next(f.glob("*.avi")).write_text("not a video " * 100), "video", "masked:.avi"),
    "video other resolution, colour": (lambda f: _video(f, [RNG.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(20)]), "video", "ok"),
    "video 5 fps, 3 frames": (lambda f: _video(f, [np.full((60, 80), 99, np.uint8)] * 3, fps=5), "video", "ok"),
    "video one frame": (lambda f: _video(f, [np.full((60, 80), 99, np.uint8)]), "video", "ok"),
    "video FMP4, index lies": (lambda f: _mpeg4(f, claim_every_frame_a_keyframe), "video", "ok"),
    "video FMP4, no index": (lambda f: _mpeg4(f, drop_indexes), "video", "ok"),
    "video FMP4, truncated": (lambda f: _mpeg4(f, _truncate), "video", "note:truncated"),
    "video FMP4, header claims more frames": (lambda f: _mpeg4(f, lambda p: claim_frames(p, 900)), "video", "note:truncated"),
    "video FMP4, no keyframe after the first": (lambda f: _mpeg4(f, gop=100_000), "video", "ok"),
    "video FMP4, B-frames": (lambda f: _mpeg4(f, b_frames=2), "video", "ok"),
    "audio zero bytes": (lambda f: next(f.glob("*.flac")).write_bytes(b""), "audio", "masked:empty"),
    "audio truncated": (lambda f: _truncate(next(f.glob("*.flac")), 0.3), "audio", "ok|masked:audio"),
    "audio is text": (lambda f: next(f.glob("*.flac")).write_text("noise " * 200), "audio", "masked:not a readable audio"),
    "audio is WAV under .flac": (lambda f: next(f.glob("*.flac")).write_bytes(_wav_bytes()), "audio", "ok"),
    "audio 44.1 kHz stereo": (lambda f: _audio(f, RNG.normal(0, 0.1, (44100, 2)), 44100), "audio", "note:resampled"),
    "audio 8 kHz": (lambda f: _audio(f, RNG.normal(0, 0.1, 16000), 8000), "audio", "note:resampled"),
    "audio 6 channels": (lambda f: _audio(f, RNG.normal(0, 0.1, (16000, 6)), 16000), "audio", "note:6 channels"),
    "audio 50 ms": (lambda f: _audio(f, RNG.normal(0, 0.1, 800), 16000), "audio", "masked:only 0.050 s"),
    "audio digital silence": (lambda f: _audio(f, np.zeros(32000), 16000), "audio", "note:silence"),
    "sensor zero bytes": (lambda f: next(f.glob("*.csv")).write_bytes(b""), "sensor", "masked:empty"),
    "sensor renamed column": (lambda f: _csv(f, lambda t: t.replace(",Feed,", ",Wire Feed,", 1)), "sensor", "masked:missing column(s) Feed"),
    "sensor text in numbers": (lambda f: _csv(f, lambda t: t.replace(",0.00,", ",n/a,", 3)), "sensor", "ok|note:interpolated"),
    "sensor unparsable times": (lambda f: _csv(f, lambda t: "\n".join([t.splitlines()[0]] + [",".join(["??", "xx:yy", *line.split(",")[2:]]) for line in t.splitlines()[1:]]) + "\n"), "sensor", "ok"),
    "sensor non-monotonic times": (lambda f: _csv(f, lambda t: "\n".join([t.splitlines()[0]] + t.splitlines()[1:][::-1]) + "\n"), "sensor", "ok"),
    "sensor BOM and CRLF": (lambda f: next(f.glob("*.csv")).write_bytes(b"\xef\xbb\xbf" + next(f.glob("*.csv")).read_bytes().replace(b"\n", b"\r\n")), "sensor", "ok"),
    "sensor header only": (lambda f: next(f.glob("*.csv")).write_text(SENSOR_HEADER + "\n"), "sensor", "masked:data row"),
    "sensor binary garbage": (lambda f: next(f.glob("*.csv")).write_bytes(os.urandom(3000)), "sensor", "masked:"),
    "sensor semicolons": (lambda f: _csv(f, lambda t: t.replace(",", ";")), "sensor", "masked:missing column"),
    "sensor a dead channel": (lambda f: _csv(f, lambda t: "\n".join([t.splitlines()[0]] + [",".join(c if i != 6 else "--" for i, c in enumerate(line.split(","))) for line in t.splitlines()[1:]]) + "\n"), "sensor", "masked:Primary Weld Current hold no number"),
    "photo zero bytes": (lambda f: sorted((f / "images").glob("*.jpg"))[0].write_bytes(b""), "images", "note:not a readable image"),
    "photo truncated": (lambda f: _truncate(sorted((f / "images").glob("*.jpg"))[1], 0.4), "images", "ok|note:not a readable image"),
    "photo is text": (lambda f: sorted((f / "images").glob("*.jpg"))[0].write_text("jpeg? " * 50), "images", "note:not a readable image"),
    "photo is a PNG": (_png_as_jpg, "images", "ok"),
    "photo grayscale and tiny": (lambda f: Image.new("L", (12, 8), 77).save(sorted((f / "images").glob("*.jpg"))[0]), "images", "ok"),
    "seven photos": (lambda f: [shutil.copy(sorted((f / "images").glob("*.jpg"))[0], f / "images" / f"zz{i}.jpg") for i in range(2)], "images", "note:7 photos"),
    "all photos unreadable": (lambda f: [p.write_bytes(b"x") for p in (f / "images").glob("*.jpg")], "images", "masked:no readable photo"),
}


@pytest.fixture(scope="module")
def weld(synth_root, tmp_path_factory):
    return weld_folder(synth_root, 20)[1]


@pytest.mark.parametrize("name", list(CASES))
def test_damaged_file(name, weld, tmp_path, cpu_config):
    damage, modality, expected = CASES[name]
    folder = copy_dataset(weld, tmp_path / weld.name)
    damage(folder)
    files, missing = locate_files(folder, folder.name, MODALITIES)
    sample = Sample(folder.name, "s", 0, "test", folder, files, missing)
    decoded = decode_sample(sample, list(MODALITIES), cpu_config, build_transforms(cpu_config))
    problem, notes = decoded.problems.get(modality, ""), " ".join(decoded.notes.get(modality, []))
    outcomes = []
    for option in expected.split("|"):
        kind, _, text = option.partition(":")
        if kind == "ok":
            outcomes.append(not problem and decoded.masks[modality].any())
        elif kind == "note":
            outcomes.append(not problem and text in notes)
        else:
            outcomes.append(bool(problem) and text in problem and not decoded.masks[modality].any())
    assert any(outcomes), f"{name}: problem={problem!r} notes={notes!r}"
    if problem:  # a masked modality names its file or folder, and is a masked placeholder, not data
        assert str(folder) in problem
        assert not decoded.masks[modality].any()
    for m in MODALITIES:
        assert np.isfinite(decoded.arrays[m]).all()


def test_reader_bounds(weld, tmp_path, cpu_config):
    folder = copy_dataset(weld, tmp_path / weld.name)
    files, missing = locate_files(folder, folder.name, MODALITIES)
    sample = Sample(folder.name, "s", 0, "test", folder, files, missing)
    bounded = load_config("cpu", ["data.max_video_frames=10", "data.max_file_mb=1"])
    transforms = build_transforms(bounded)
    video = decode_sample(sample, ["video"], bounded, transforms)
    assert "above the 10 frame" in video.problems["video"] or "bound" in video.problems["video"]
    big = folder / "images" / "big.jpg"
    big.write_bytes(b"\xff\xd8" + os.urandom(2 * 2**20))
    photos = decode_sample(Sample(folder.name, "s", 0, None, folder, {"images": (big,)}, {}), ["images"], bounded, transforms)
    assert "1 MiB bound" in photos.problems["images"]


# ---------------------------------------------------------------- manifests and commands


def _manifest(root: Path, edit) -> None:
    path = root / "manifest.csv"
    path.write_bytes(edit(path.read_bytes()))


def _lines(edit):
    return lambda data: ("\n".join(edit(data.decode().splitlines())) + "\n").encode()


COMMAND_CASES = {
    "manifest missing SUBDIRS column": (_lines(lambda ls: [",".join(c for c in l.split(",")[:10]) for l in ls]), ["data", "check"], 2, "missing column(s) SUBDIRS"),
    "manifest duplicate SUBDIRS": (_lines(lambda ls: ls + [ls[1]]), ["data", "check"], 2, "duplicate SUBDIRS"),
    "manifest unknown category": (_lines(lambda ls: ls + ["Cold Lap" + ls[1][ls[1].index(","):].replace("-00,", "-99,")]), ["data", "check"], 2, "unknown category 'Cold Lap'"),
    "manifest SPLIT holdout": (_lines(lambda ls: ls[:1] + [ls[1].rsplit(",", 1)[0] + ",HOLDOUT"] + ls[2:]), ["data", "check"], 2, "unknown SPLIT 'HOLDOUT'"),
    "manifest header only": (_lines(lambda ls: ls[:1]), ["data", "check"], 2, "no usable sample"),
    "manifest empty file": (lambda data: b"", ["data", "check"], 2, "not a readable CSV"),
    "manifest binary": (lambda data: os.urandom(500), ["data", "check"], 2, "manifest.csv"),
    "manifest BOM and CRLF": (lambda data: b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"), ["data", "check"], 0, ""),
    "manifest lower-case splits": (lambda data: data.replace(b",TRAIN", b",train").replace(b",TEST", b",Test"), ["data", "check"], 0, ""),
    "manifest without a test split": (_lines(lambda ls: [l for l in ls if not l.endswith(",TEST")]), ["evaluate-test"], 2, "test split"),
    "manifest with one class in train": (_lines(lambda ls: [l for l in ls if not (l.endswith(",TRAIN") and not l.startswith("Good"))]), ["train"], 2, "cannot train supervised contrastive"),
    "every medium missing": ("delete-media", ["train"], 2, "no usable"),
}


@pytest.fixture(scope="module")
def small_root(synth_root, tmp_path_factory):
    return synth_root


@pytest.mark.parametrize("name", list(COMMAND_CASES))
def test_bad_dataset_commands(name, small_root, trained_run, tmp_path, capsys):
    edit, command, code, message = COMMAND_CASES[name]
    root = copy_dataset(small_root, tmp_path / "data")
    if edit == "delete-media":
        for path in root.rglob("*"):
            if path.is_file() and path.name != "manifest.csv":
                path.unlink()
    else:
        _manifest(root, edit)
    if command == ["train"]:
        argv = ["train", str(root), "--out", str(tmp_path / "run"), "--set", f"cache.dir={tmp_path / 'cache'}"]
    elif command == ["evaluate-test"]:
        argv = ["evaluate", str(trained_run), "--data", str(root)]
    else:
        argv = [*command, str(root)]
    assert main(argv) == code, name
    err = capsys.readouterr().err
    if code:
        assert err.count("\n") == 1 and message in err, err
        assert "Traceback" not in err


def test_non_ascii_paths_work_end_to_end(synth_root, tmp_path, capsys):
    root = copy_dataset(synth_root, tmp_path / "données_soudure_溶接")
    data = (root / "manifest.csv").read_text(encoding="utf-8")
    session = data.splitlines()[1].split(",")[9]
    shutil.move(root / session, root / f"{session}_é")
    (root / "manifest.csv").write_text(data.replace(f"{session},{session}/", f"{session}_é,{session}_é/"), encoding="utf-8")
    assert main(["data", "check", str(root), "--json", str(tmp_path / "c.json")]) == 0
    report = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    assert report["usable"] == report["rows"] and report["problems"] == []


def test_predict_reads_only_its_folder(trained_run, weld, tmp_path, capsys):
    folder = copy_dataset(weld, tmp_path / "weld")
    secret = tmp_path / "secret.flac"
    shutil.move(next(folder.glob("*.flac")), secret)
    os.symlink(secret, folder / f"{folder.name}.flac")
    assert main(["predict", str(trained_run), str(folder), "--json", str(tmp_path / "p.json")]) == 0
    (prediction,) = json.loads((tmp_path / "p.json").read_text())["predictions"]
    assert "links outside" in prediction["available"]["audio"]


@pytest.mark.parametrize("argv,message", [
    (["predict", "RUN", "FILE"], "not a directory"),
    (["train", "DATA", "--out", "RUNX", "--resume"], "nothing to resume"),
    (["train", "DATA", "--out", "RUNX", "--set", "model.fusion.kind=transformer"], "model.fusion.kind"),
    (["train", "DATA", "--out", "RUNX", "--set", "nonsense.key=1"], "unknown key"),
    (["train", "DATA", "--out", "RUNX", "--preset", "missing.yaml"], "preset file not found"),
    (["data", "split", "DATA", "--out", "X.csv", "--val", "0.7", "--test", "0.5"], "val + test < 1"),
    (["evaluate", "DATA"], "not a weldfusion run folder"),
])  # fmt: skip
def test_bad_command_arguments(argv, message, trained_run, synth_root, tmp_path, capsys):
    file = tmp_path / "file.txt"
    file.write_text("x")
    names = {"RUN": str(trained_run), "FILE": str(file), "DATA": str(synth_root), "RUNX": str(tmp_path / "runx"), "X.csv": str(tmp_path / "x.csv")}
    assert main([names.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_manifest_reader_never_opens_rows_outside(tmp_path):
    (tmp_path / "manifest.csv").write_text("CATEGORY,SUBDIRS,SPLIT\nGood,/etc/x/p,TRAIN\nGood,a/../../p,TRAIN\n")
    manifest = read_manifest(tmp_path / "manifest.csv")
    assert len(manifest.table) == 2  # parsed; build_samples rejects both (tests/test_samples.py)
