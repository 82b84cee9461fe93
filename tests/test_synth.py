import hashlib

import cv2
import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

from weldfusion.data.manifest import read_manifest
from weldfusion.data.split import session_groups, sessions_crossing_splits
from weldfusion.synth.generate import SENSOR_HEADER, plan, synthesize, write_weld
from weldfusion.synth.render import SIGNATURES


def test_signatures_need_fusion():
    codes = list(SIGNATURES.values())
    assert len(set(codes)) == 12  # all four modalities together tell every class apart
    for m in range(4):
        others = [tuple(c[:m] + c[m + 1 :]) for c in codes]
        # some classes differ in this modality alone ...
        assert len(set(others)) < len(others), f"modality {m} is never needed"
        # ... and this modality alone leaves classes confused
        assert len({c[m] for c in codes}) < 12


def test_files_are_in_the_real_format(synth_root):
    m = read_manifest(synth_root / "manifest.csv")
    key = m.table["key"].iloc[0]
    part = key.split("/")[-1]
    folder = synth_root / key
    assert part[-2:] == f"{m.table['label'].iloc[0]:02d}"
    capture = cv2.VideoCapture(str(folder / f"{part}.avi"))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    assert fourcc == "FMP4" and capture.get(cv2.CAP_PROP_FPS) in (30.0, 31.0)
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (160, 100)
    info = sf.info(str(folder / f"{part}.flac"))
    assert (info.format, info.samplerate, info.channels, info.subtype) == ("FLAC", 16000, 1, "PCM_16")
    lines = (folder / f"{part}.csv").read_text().splitlines()
    assert lines[0] == SENSOR_HEADER
    log = pd.read_csv(folder / f"{part}.csv")
    assert (log["Part No"] == part).all() and log["Remarks"].isna().all()
    assert log["Primary Weld Current"].iloc[0] < 5 and log["Primary Weld Current"].max() > 100  # arc-off margin
    rate = len(log) / (info.duration)
    assert 5 < rate < 12  # ~8.6 Hz (recordings are not synchronised)
    photos = sorted((folder / "images").glob("*.jpg"))
    assert len(photos) == 5 and Image.open(photos[0]).format == "JPEG"


def test_supervised_split_is_session_disjoint_with_every_class(synth_root):
    table = read_manifest(synth_root / "manifest.csv").table
    assert sessions_crossing_splits(table) == []
    groups = session_groups(table)
    assert table.groupby(groups)["split"].nunique().max() == 1
    assert (pd.crosstab(table["label"], table["split"]) > 0).all().all()


def test_official_split_and_determinism(tmp_path):
    a = synthesize(tmp_path / "a", per_class=8, seconds=0.5, split="official", seed=5, workers=1)
    b = synthesize(tmp_path / "b", per_class=8, seconds=0.5, split="official", seed=5, workers=2)
    table = read_manifest(a).table
    assert set(table.loc[table["split"] == "train", "label"]) == {0}
    assert set(table.loc[table["split"] != "train", "label"]) == set(range(12))
    assert table["session"].str.match(r"^2_").any()  # a top-up twin session (Good: 16 welds in 4 sessions)
    assert a.read_bytes() == b.read_bytes()

    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip

    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_real_size_resolutions(tmp_path):
    weld = plan(per_class=1, seconds=0.3, size="real", seed=0)[0]
    write_weld(tmp_path, weld)
    folder = tmp_path / weld.key
    capture = cv2.VideoCapture(str(next(folder.glob("*.avi"))))
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (960, 600)
    assert Image.open(next((folder / "images").glob("*.jpg"))).size == (2000, 900)
    ok, frame = capture.read()
    assert ok and np.array_equal(frame[..., 0], frame[..., 2])
