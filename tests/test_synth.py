import hashlib
import json

import cv2
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from weldfusion.config import load_config
from weldfusion.data.categories import CATEGORIES
from weldfusion.data.manifest import read_manifest
from weldfusion.data.split import session_groups, sessions_crossing_splits
from weldfusion.data.transforms import ImageTransform, ResizeCrop
from weldfusion.metrics.localisation import localisation_metrics, read_ground_truth
from weldfusion.synth.events import CLASS_KINDS, draw_layout
from weldfusion.synth.generate import SENSOR_HEADER, manifest_rows, plan, synthesize, write_weld
from weldfusion.synth.nuisance import TAG_SIZE
from weldfusion.synth.render import SENSOR_RATE, SIGNATURES


def digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


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


# --- realistic difficulty -------------------------------------------------------------------------

REALISTIC = dict(per_class=3, seconds=2.0, size="small", split="supervised", seed=3, difficulty="realistic")


@pytest.fixture(scope="module")
def realistic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("realistic")
    synthesize(root, workers=2, **REALISTIC)
    return root


def layouts(**kwargs) -> dict:
    """SUBDIRS -> (weld, layout) as the generator drew them."""
    return {w.key: (w, draw_layout(w.nuisance, w.label, w.seconds, w.seed))
            for w in plan(kwargs["per_class"], kwargs["seconds"], kwargs["size"], kwargs["seed"], difficulty="realistic")}  # fmt: skip


def test_ground_truth_format(realistic_root):
    data = json.loads((realistic_root / "ground_truth.json").read_text())
    assert (data["format"], data["version"]) == ("weldfusion-ground-truth", 1)
    table = read_manifest(realistic_root / "manifest.csv").table
    assert sorted(data["welds"]) == sorted(table["key"])
    for key, weld in data["welds"].items():
        label = int(key[-2:])
        assert weld["category"] == CATEGORIES[label]
        assert [e["kind"] for e in weld["events"]] == list(CLASS_KINDS[label])  # Good welds: no event
        for event in weld["events"]:
            assert set(event["windows"]) == set(event["modalities"]) - {"images"}
            for recording, (a, b) in event["windows"].items():
                assert 0 <= a < b <= weld["recordings"][recording]["duration"]
            if event["extent"] == "local":  # somewhere in the middle of the weld
                arc0, arc1 = weld["recordings"]["sensor"]["arc"]
                a, b = event["windows"]["sensor"]
                assert arc0 + 0.1 * (arc1 - arc0) < a < b < arc1
            assert bool(event["photos"]) == ("images" in event["modalities"])
            for photo in event["photos"]:
                x0, y0, x1, y1 = photo["box"]
                assert 0 <= photo["view"] < 5 and 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert read_ground_truth(realistic_root / "ground_truth.json").keys() == data["welds"].keys()


def sensor_deviation(path, column: str, sign: int) -> np.ndarray:
    """Profile [[t, score]] of a channel's deviation from its arc-on median (rows at ~8.6 Hz)."""
    log = pd.read_csv(path)
    values, on = log[column].to_numpy(float), log["Primary Weld Current"].to_numpy(float) > 5
    return np.stack([np.arange(len(values)) / SENSOR_RATE, np.where(on, sign * (values - np.median(values[on])), -np.inf)], 1)


def crackle(path) -> np.ndarray:
    """Profile of the audio's pops: the steepest sample step per 50 ms, smoothed over 0.5 s."""
    wave, rate = sf.read(path)
    hop = rate // 20
    steps = np.abs(np.diff(wave))
    peaks = steps[: len(steps) // hop * hop].reshape(-1, hop).max(1)
    return np.stack([(np.arange(len(peaks)) + 0.5) * hop / rate, np.convolve(peaks, np.ones(10) / 10, mode="same")], 1)


def sparks(path) -> np.ndarray:
    """Profile of the video's bright pixels (arc and sparks), smoothed over 9 frames."""
    capture = cv2.VideoCapture(str(path))
    fps, counts = capture.get(cv2.CAP_PROP_FPS), []
    while (frame := capture.read()[1]) is not None:
        counts.append(float((frame[..., 0] > 140).sum()))
    return np.stack([np.arange(len(counts)) / fps, np.convolve(counts, np.ones(9) / 9, mode="same")], 1)


def darkness(path) -> np.ndarray:
    """Heatmap of dark spots in a photo, its paper tag whitened first (the print is darker than any pit)."""
    rgb = np.array(Image.open(path).convert("RGB"))
    for x0, y0, x1, y1 in ImageTransform(ResizeCrop.for_crop(56), [0, 0, 1, 1]).find_tags(rgb):
        rgb[y0:y1, x0:x1] = 255
    return -cv2.GaussianBlur(rgb.mean(axis=2).astype(np.float32), (0, 0), 1.0)


def test_planted_events_are_where_the_ground_truth_says(realistic_root):
    """Simple detectors that know each signal find it inside the true window or box, in every weld:
    the ground truth's clocks and boxes match the recordings."""
    truth = read_ground_truth(realistic_root / "ground_truth.json")
    profiles, heatmaps = {}, {}
    for key, weld in truth.items():
        folder, part = realistic_root / key, key.split("/")[-1]
        if weld.category == "Porosity":  # gas flow dips; dark pits in the photos
            profiles[key] = {"sensor": sensor_deviation(folder / f"{part}.csv", "CO2 Weld Flow", -1)}
            photos = sorted((folder / "images").glob("*.jpg"))
            heatmaps[key] = {v: darkness(photos[v]) for v in weld.boxes}
        elif weld.category == "Spatter":  # sparks, crackle, current spikes
            profiles[key] = {"video": sparks(folder / f"{part}.avi"), "audio": crackle(folder / f"{part}.flac"),
                             "sensor": sensor_deviation(folder / f"{part}.csv", "Primary Weld Current", 1)}  # fmt: skip
        elif weld.category == "Burnthrough":  # the arc lengthens through the hole
            profiles[key] = {"sensor": sensor_deviation(folder / f"{part}.csv", "Secondary Weld Voltage", 1)}
    figures = localisation_metrics(truth, profiles, heatmaps)
    assert figures["video"]["n"] == figures["audio"]["n"] == 3 and figures["sensor"]["n"] == 9
    for modality in ("video", "audio", "sensor"):
        assert figures[modality]["peak_in_window"] == 1.0 > figures[modality]["chance"]
    assert figures["images"]["peak_in_box"] == 1.0 and figures["images"]["n_with_box"] >= 6


def test_every_paper_tag_is_found_and_nothing_else(realistic_root):
    assert load_config("cpu").data.images.tag_box == [0.0, 0.0, 1.0, 1.0]
    transform = ImageTransform(ResizeCrop.for_crop(56), [0.0, 0.0, 1.0, 1.0])
    for key, (weld, layout) in layouts(**REALISTIC).items():
        for view, path in enumerate(sorted((realistic_root / key / "images").glob("*.jpg"))):
            rgb = np.asarray(Image.open(path).convert("RGB"))
            height, width = rgb.shape[:2]
            x, y = layout.views[view].tag
            tag = (int(x * width), int(y * height), int(x * width) + int(TAG_SIZE[0] * width), int(y * height) + int(TAG_SIZE[1] * height))
            [found] = transform.find_tags(rgb)
            assert found[:2] <= tag[:2] and found[2:] >= tag[2:], (path, found, tag)
            assert (found[2] - found[0]) * (found[3] - found[1]) < 3 * (tag[2] - tag[0]) * (tag[3] - tag[1])


def test_realistic_is_byte_identical_for_the_same_seed(tmp_path):
    kwargs = dict(per_class=1, seconds=1.0, size="small", split="official", difficulty="realistic")
    synthesize(tmp_path / "a", seed=7, workers=1, **kwargs)
    synthesize(tmp_path / "b", seed=7, workers=2, **kwargs)
    synthesize(tmp_path / "c", seed=8, workers=2, **kwargs)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert (tmp_path / "a" / "ground_truth.json").read_bytes() == (tmp_path / "b" / "ground_truth.json").read_bytes()
    assert (tmp_path / "a" / "ground_truth.json").read_bytes() != (tmp_path / "c" / "ground_truth.json").read_bytes()


def test_easy_writes_no_ground_truth_and_removes_a_stale_one(tmp_path):
    synthesize(tmp_path, per_class=1, seconds=0.5, seed=1, workers=1, difficulty="realistic")
    assert (tmp_path / "ground_truth.json").is_file()
    synthesize(tmp_path, per_class=1, seconds=0.5, seed=1, workers=1)
    assert not (tmp_path / "ground_truth.json").exists()


def test_recipe_does_not_give_the_class_away():
    """Realistic sessions draw recipe and nuisance alike for every class (unlike the real manifest,
    where gas 0 bar means porosity)."""
    rows = manifest_rows(plan(40, 3.0, "small", 0, difficulty="realistic"), "supervised", 0)
    means = rows.groupby("CATEGORY")[["CURRENT_A", "VOLTAGE_V", "GAS_BAR"]].mean()
    spread = rows[["CURRENT_A", "VOLTAGE_V", "GAS_BAR"]].std()
    assert ((means - means.loc["Good"]).abs() < spread).all().all()


def test_anomaly_split_is_session_disjoint_with_good_only_training(tmp_path):
    welds = plan(8, 1.0, "small", 0, difficulty="realistic")

    def table(split: str) -> pd.DataFrame:
        manifest_rows(welds, split, 0).to_csv(tmp_path / f"{split}.csv", index=False)
        return read_manifest(tmp_path / f"{split}.csv").table

    anomaly = table("anomaly")
    assert set(anomaly.loc[anomaly["split"] == "train", "label"]) == {0}
    assert set(anomaly.loc[anomaly["split"] == "test", "label"]) == set(range(12))
    assert sessions_crossing_splits(anomaly) == []
    assert sessions_crossing_splits(table("official"))  # the real split's leak


def test_realistic_real_size(tmp_path):
    weld = plan(per_class=1, seconds=0.3, size="real", seed=0, difficulty="realistic")[2]  # Excessive_Penetration: a wide, bright bead
    write_weld(tmp_path, weld)
    folder = tmp_path / weld.key
    capture = cv2.VideoCapture(str(next(folder.glob("*.avi"))))
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (960, 600)
    photo = np.asarray(Image.open(next((folder / "images").glob("*.jpg"))).convert("RGB"))
    assert photo.shape == (900, 2000, 3)
    assert len(ImageTransform(ResizeCrop.for_crop(224), [0.0, 0.0, 1.0, 1.0]).find_tags(photo)) == 1
