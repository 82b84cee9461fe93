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

from tests.conftest import BUILTIN as MODALITIES
from weldfusion.cli.main import main
from weldfusion.config import load_config
from weldfusion.data.dataset import decode_sample
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import Sample, locate_files
from weldfusion.features import build_transforms
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


def _cell(line: str, index: int, value: str) -> str:
    cells = line.split(",")
    cells[index] = value
    return ",".join(cells)


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
    "sensor one more field per row": (lambda f: _csv(f, lambda t: "\n".join([t.splitlines()[0]] + [l + ",extra" for l in t.splitlines()[1:]]) + "\n"), "sensor", "ok"),
    "sensor inf cells": (lambda f: _csv(f, lambda t: "\n".join([t.splitlines()[0]] + [_cell(l, 4, "-inf" if i % 2 else "inf") if i % 7 == 3 else l for i, l in enumerate(t.splitlines()[1:])]) + "\n"), "sensor", "note:non-finite or out-of-bounds"),
    "sensor absurd current": (lambda f: _csv(f, lambda t: "\n".join([t.splitlines()[0]] + [_cell(l, 6, "1e30") if i == 5 else l for i, l in enumerate(t.splitlines()[1:])]) + "\n"), "sensor", "note:out-of-bounds"),
    "sensor one line of 300k fields": (lambda f: next(f.glob("*.csv")).write_text(",".join(["1.0"] * 300_000) + "\n"), "sensor", "masked:longer than"),
    "sensor 2000 fields per row": (lambda f: _csv(f, lambda t: "\n".join([t.splitlines()[0]] + [l + ",0" * 2000 for l in t.splitlines()[1:]]) + "\n"), "sensor", "masked:fields, above"),
    "sensor 30 MB single line": (lambda f: next(f.glob("*.csv")).write_text("9" * 30_000_000), "sensor", "masked:longer than"),
    "photo decompression bomb": (lambda f: Image.new("1", (30000, 10000)).save(sorted((f / "images").glob("*.jpg"))[0], format="PNG"), "images", "note:not a readable image"),
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
    decoded = decode_sample(sample, list(MODALITIES), cpu_config.data, build_transforms(cpu_config))
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
    video = decode_sample(sample, ["video"], bounded.data, transforms)
    assert "above the 10 frame" in video.problems["video"] or "bound" in video.problems["video"]
    big = folder / "images" / "big.jpg"
    big.write_bytes(b"\xff\xd8" + os.urandom(2 * 2**20))
    photos = decode_sample(Sample(folder.name, "s", 0, None, folder, {"images": (big,)}, {}), ["images"], bounded.data, transforms)
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


# ---------------------------------------------------------------- reliability: no silent answer, no overwrite, one line


def test_sensor_rows_with_a_trailing_field_stay_aligned_to_the_header(weld, tmp_path, cpu_config):
    folder = copy_dataset(weld, tmp_path / weld.name)
    files, missing = locate_files(folder, folder.name, MODALITIES)
    sample = Sample(folder.name, "s", 0, "test", folder, files, missing)
    before = decode_sample(sample, ["sensor"], cpu_config.data, build_transforms(cpu_config)).arrays["sensor"]
    _csv(folder, lambda t: "\n".join([t.splitlines()[0]] + [line + ",7" for line in t.splitlines()[1:]]) + "\n")
    after = decode_sample(sample, ["sensor"], cpu_config.data, build_transforms(cpu_config)).arrays["sensor"]
    np.testing.assert_array_equal(before, after)


def _unreadable(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00garbage" * 10)


@pytest.mark.parametrize("run_fixture", ["trained_run", "official_run"])
def test_a_weld_nothing_of_which_can_be_read_gets_no_verdict(run_fixture, request, weld, tmp_path, capsys):
    run = request.getfixturevalue(run_fixture)
    blind = copy_dataset(weld, tmp_path / "blind" / weld.name)
    _unreadable(blind)
    seen = copy_dataset(weld, tmp_path / "seen" / weld.name)
    assert main(["predict", str(run), str(blind), str(seen), "--json", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert "no usable modality" in err and "no decision" in err
    blind_p, seen_p = json.loads((tmp_path / "p.json").read_text())["predictions"]  # strict JSON: no NaN
    assert blind_p["decision"] is None and blind_p["defect_score"] is None
    assert all(why != "ok" for why in blind_p["available"].values())
    assert seen_p["decision"] in ("good", "defect")


def _lock(folder: Path) -> object:
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / ".lock")
    lock.acquire()
    return lock


RELIABILITY_CASES = {
    "split over its own manifest": (lambda r, t: ["data", "split", str(r), "--out", str(r / "manifest.csv")], "is the manifest being split"),
    "synth into a dataset": (lambda r, t: ["synth", str(r), "--per-class", "1"], "not an empty folder"),
    "json names a directory": (lambda r, t: ["data", "check", str(r), "--quick", "--json", str(t)], "is a directory"),
    "devices 0": (lambda r, t: ["train", str(r), "--out", str(t / "run"), "--devices", "0"], "--devices 0"),
    "accelerator gpu without one": (lambda r, t: ["train", str(r), "--out", str(t / "run"), "--accelerator", "gpu"], "no CUDA GPU"),
    "negative learning rate": (lambda r, t: ["train", str(r), "--out", str(t / "run"), "--set", "train.lr=-1"], "train.lr: Input should be greater than 0"),
    "zero fusion tokens": (lambda r, t: ["train", str(r), "--out", str(t / "run"), "--set", "model.fusion.tokens=0"], "model.fusion.tokens"),
    "negative workers": (lambda r, t: ["train", str(r), "--out", str(t / "run"), "--set", "data.num_workers=-1"], "data.num_workers"),
    "evaluate k 0": (lambda r, t: ["evaluate", "RUN", "--k", "0"], "--k 0"),
    "out is a file": (lambda r, t: (t / "afile").write_text("x") and ["train", str(r), "--out", str(t / "afile")], "exists and is not a folder"),
}


@pytest.mark.parametrize("name", list(RELIABILITY_CASES))
def test_refusals_are_one_line_and_write_nothing(name, synth_root, trained_run, tmp_path, capsys):
    root = copy_dataset(synth_root, tmp_path / "data")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    argv = [a if a != "RUN" else str(trained_run) for a in RELIABILITY_CASES[name][0](root, tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert RELIABILITY_CASES[name][1] in err and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "run").exists()


def test_a_second_writer_of_a_run_refuses(trained_run, synth_root, tmp_path, capsys):
    run = shutil.copytree(trained_run, tmp_path / "run")
    locks = [_lock(run), _lock(run / "eval" / "test")]
    try:
        assert main(["train", str(synth_root), "--out", str(run), "--resume", "--set", "train.epochs=99"]) == 2
        assert main(["evaluate", str(run)]) == 2
    finally:
        for lock in locks:
            lock.release()
    assert load_config(str(run / "config.yaml")).train.epochs != 99  # a refused resume changes nothing
    assert capsys.readouterr().err.count("in use by another weldfusion process") == 2


@pytest.mark.parametrize("damage,message", [
    (lambda run: (run / "run.json").write_text("{not json"), "run.json: damaged"),
    (lambda run: (run / "run.json").write_text("[]"), "not a weldfusion run.json"),
    (lambda run: (run / "model" / "threshold.json").write_text('{"threshold": '), "threshold.json: damaged"),
    (lambda run: (run / "model" / "threshold.json").unlink(), "threshold.json: missing"),
])  # fmt: skip
def test_damaged_run_files_are_one_line(damage, message, trained_run, weld, tmp_path, capsys):
    run = shutil.copytree(trained_run, tmp_path / "run")
    damage(run)
    assert main(["predict", str(run), str(weld)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("code,text", [(28, "no space left"), (30, "read-only file system"), (13, "permission denied")])
def test_operating_system_errors_are_one_line(code, text, synth_root, tmp_path, capsys, monkeypatch):
    import weldfusion.io

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "report.json"))

    monkeypatch.setattr(weldfusion.io.os, "replace", fail)
    assert main(["data", "check", str(synth_root), "--quick", "--json", str(tmp_path / "report.json")]) == 2
    err = capsys.readouterr().err
    assert text in err and str(tmp_path / "report.json") in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_manifest_rows_that_cannot_name_a_folder_are_reported(synth_root, tmp_path, capsys):
    root = copy_dataset(synth_root, tmp_path / "data")
    lines = (root / "manifest.csv").read_text().splitlines()
    nul = lines[1].replace("/", "/x\x00", 1)
    long = lines[2].replace("/", "/" + "n" * 300, 1)
    cells = lines[3].split(",")
    cells[10] = cells[10].replace("/", "//") + "/"  # SUBDIRS: the same weld as row 4, spelled differently
    twice = ",".join(cells)
    (root / "manifest.csv").write_text("\n".join([*lines, nul, long]) + "\n")
    assert main(["data", "check", str(root), "--json", str(tmp_path / "c.json")]) == 0
    problems = " ".join(p["problem"] for p in json.loads((tmp_path / "c.json").read_text())["problems"])
    assert "NUL byte" in problems and "longer than 255 bytes" in problems
    (root / "manifest.csv").write_text("\n".join([*lines, twice]) + "\n")
    assert main(["data", "check", str(root)]) == 2
    assert "duplicate SUBDIRS" in capsys.readouterr().err


def test_bounds_are_shared_by_data_check_and_the_readers(synth_root, tmp_path):
    from weldfusion.engine import check_data

    bounded = load_config("cpu", ["data.audio.max_seconds=1", "data.max_video_frames=10"])
    report = check_data(synth_root, bounded)
    problems = [p for p in report.problems if p["masked"]]
    assert sum("data.audio.max_seconds" in p["problem"] for p in problems) == report.rows
    assert sum("data.max_video_frames" in p["problem"] for p in problems) == report.rows


def test_ctrl_c_during_training_exits_130_with_the_resume_command(synth_root, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    command = [sys.executable, "-m", "weldfusion", "train", str(synth_root), "--out", str(run), "--set", "train.epochs=200",
               "--set", "train.patience=0", "--set", f"cache.dir={tmp_path / 'cache'}", "--set", "data.num_workers=0"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (run / "logs" / "metrics.csv").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert f"resume with: weldfusion train {synth_root} --out {run} --resume" in " ".join(err.split())
