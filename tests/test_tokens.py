"""Token-level anomaly scoring: the memory bank against brute force, coreset properties, token places,
and localisation of planted anomalies through the real readers, encoders and scorer."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from weldfusion.config import load_config
from weldfusion.data.categories import GOOD
from weldfusion.data.manifest import read_manifest
from weldfusion.data.readers import row_times
from weldfusion.data.samples import build_samples, folder_sample
from weldfusion.features import FeatureSource
from weldfusion.models.bank import MemoryBank, greedy_coreset
from weldfusion.models.layout import token_set
from weldfusion.protocols.tokens import TokenScorer, localise

MAGENTA = (255, 0, 255)


def test_bank_distances_match_a_brute_force_loop():
    rng = np.random.default_rng(0)
    tokens, owners = rng.normal(size=(300, 8)).astype(np.float32), np.repeat(np.arange(10), 30)
    query = rng.normal(size=(40, 8)).astype(np.float32)
    bank = MemoryBank.build(tokens, owners, ratio=1.0)
    for k in (1, 3):
        brute = [np.mean(sorted(np.sqrt(((tokens - q) ** 2).sum(1)))[:k]) for q in query]
        np.testing.assert_allclose(bank.distances(query, k), brute, rtol=1e-4)
        others = tokens[owners != 4]
        brute = [np.mean(sorted(np.sqrt(((others - q) ** 2).sum(1)))[:k]) for q in query]
        np.testing.assert_allclose(bank.distances(query, k, exclude=4), brute, rtol=1e-4)


def test_token_scorer_scores_are_the_max_over_tokens_of_standardised_distances():
    rng = np.random.default_rng(1)
    good = [token_set(rng.normal(size=(6, 4)), np.ones(6, bool), (6, 1, 1), np.array([[0.0, 3.0]])) for _ in range(5)]
    scorer = TokenScorer(["sensor"], ratio=1.0)
    own = scorer.fit({"sensor": good}, say=lambda *a: None)["sensor"]
    values = np.concatenate([g.values for g in good])
    z = (values - values.mean(0)) / values.std(0)
    for i in range(5):  # each Good weld against the others' tokens only
        mine, others = z[6 * i : 6 * i + 6], np.delete(z, np.s_[6 * i : 6 * i + 6], axis=0)
        expected = max(np.sqrt(((others - t) ** 2).sum(1)).min() for t in mine)
        assert own[i].max() == pytest.approx(expected, rel=1e-4)
    query = token_set(rng.normal(size=(6, 4)) * 3, np.ones(6, bool), (6, 1, 1), np.array([[0.0, 3.0]]))
    per_token = scorer.score_tokens({"sensor": [query, None]})
    raw = scorer.pooled(per_token)
    expected = [np.sqrt(((z - t) ** 2).sum(1)).min() for t in (query.values - values.mean(0)) / values.std(0)]
    np.testing.assert_allclose(per_token["sensor"][0], expected, rtol=1e-4)
    assert raw["sensor"][0] == pytest.approx(max(expected), rel=1e-4) and np.isnan(raw["sensor"][1])


def test_the_weld_score_quantile_is_chosen_per_modality_on_val():
    scorer = TokenScorer(["video", "audio"], quantiles=[1.0, 0.5])
    good, bad = [np.array([0.0, 0.0, 0.0, 9.0])] * 3, [np.array([1.0, 1.0, 1.0, 1.0])] * 3  # one outlier token per Good weld
    tried = scorer.choose({"video": good + bad, "audio": bad + good}, np.array([False] * 3 + [True] * 3))
    assert scorer.quantile == {"video": 0.5, "audio": 1.0}  # the median separates; the max would rank them backwards
    assert tried["video"] == {"1.0": 0.0, "0.5": 1.0}
    assert scorer.choose({"video": good, "audio": good}, np.zeros(3, bool)) == {"video": {"1.0": None, "0.5": None},
                                                                                "audio": {"1.0": None, "0.5": None}}
    assert scorer.quantile == {"video": 1.0, "audio": 1.0}


def test_coreset_covers_better_as_it_grows_and_is_deterministic():
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(500, 16)).astype(np.float32))
    radii = [greedy_coreset(x, size, seed=3)[1] for size in (5, 25, 100, 400)]
    assert radii == sorted(radii, reverse=True) and radii[-1] < radii[0] / 2
    chosen, radius = greedy_coreset(x, 25, seed=3)
    again, _ = greedy_coreset(x, 25, seed=3)
    assert torch.equal(chosen, again) and len(set(chosen.tolist())) == 25
    assert torch.equal(greedy_coreset(x, 100, seed=3)[0][:25], chosen)  # a smaller coreset is a prefix of a larger one
    brute = torch.cdist(x, x[chosen]).min(1).values.max()  # no projection at 16 dims: the radius is exact
    assert radius == pytest.approx(float(brute), rel=1e-4)
    assert not torch.equal(greedy_coreset(x, 25, seed=4)[0], chosen)


def test_token_places_follow_the_grid_and_the_items_spans():
    grid, span = (2, 3, 4), np.array([[1.0, 3.0], [10.0, 14.0]])
    values = np.arange(2 * 24 * 1, dtype=np.float32).reshape(48, 1)
    valid = np.ones(48, bool)
    valid[24:30] = False
    places = token_set(values, valid, grid, span)
    assert len(places) == 42 and places.values[24, 0] == 30.0  # masked tokens dropped, order kept
    first = places.item == 0
    assert sorted(set(places.time[first])) == [1.5, 2.5] and sorted(set(places.time[~first])) == [11.0, 13.0]
    assert sorted(set(places.y)) == pytest.approx([1 / 6, 0.5, 5 / 6]) and sorted(set(places.x)) == [0.125, 0.375, 0.625, 0.875]
    assert (places.time[1], places.y[4], places.x[5]) == (1.5, 0.5, 0.375)  # t 0, row 1 col 0 is token 4; token 5 is col 1


def test_sensor_times_come_from_timestamps_or_from_the_row_index():
    rows = [["10-06-22", f"09:00:0{i}.500"] for i in range(6)]
    times, note = row_times(["Date", "Time"], rows)
    assert times.tolist() == [0, 1, 2, 3, 4, 5] and note is None
    rows[3][1] = "09:00:02.000"  # goes back: times by index at the median interval
    times, note = row_times(["Date", "Time"], rows)
    assert times.tolist() == [0, 1, 2, 3, 4, 5] and "not monotonic" in note
    times, note = row_times(["Pressure"], [["1"]] * 3)
    assert times[1] == pytest.approx(1 / 8.6) and "missing" in note


def test_profiles_and_heatmaps_peak_where_the_tokens_score_highest():
    times = token_set(np.zeros((8, 1)), np.ones(8, bool), (4, 2, 1), np.array([[0.0, 4.0]]))
    found = localise(times, np.array([0, 1, 0, 0, 5, 2, 0, 0.0]))
    assert found["peak_s"] == 2.5 and found["profile"] == [[0.5, 1.0], [1.5, 0.0], [2.5, 5.0], [3.5, 0.0]]
    photo = token_set(np.zeros((12, 1)), np.ones(12, bool), (1, 2, 3), np.full((2, 2), np.nan))
    scores = np.zeros(12)
    scores[6 + 5] = 7.0  # view 1, row 1, column 2
    views = localise(photo, scores)
    assert [v["view"] for v in views] == [0, 1] and views[1]["peak"] == [0.8333, 0.75]  # rounded to 4 places
    assert views[1]["score"] == 7.0 and views[1]["heatmap"].shape == (2, 3) and views[1]["heatmap"][1, 2] == 7.0


# -- planted anomalies, through the real readers, encoders and scorer ---------------------------
@pytest.fixture(scope="module")
def good_bank(official_root):
    """Token scorers fitted on the Good TRAIN welds of the official-style session dataset (cpu preset)."""
    config = load_config("cpu")
    samples, _ = build_samples(official_root, read_manifest(official_root / "manifest.csv"))
    good = [s for s in samples if s.split == "train" and s.label == GOOD]
    features = FeatureSource(config, persistent=False, device="cpu")
    features.prepare(good)
    modalities = ["video", "images"]
    scorer = TokenScorer(modalities, ratio=0.5)
    scorer.fit({m: features.tokens(good, m)[0] for m in modalities}, say=lambda *a: None)
    return config, scorer, good


def located(config, scorer, folder: Path, modality: str):
    features = FeatureSource(config, persistent=False, device="cpu")
    sample = folder_sample(folder, config.model.modalities)
    features.prepare([sample])
    (tokens,), _ = features.tokens([sample], modality)
    return localise(tokens, scorer.token_scores(modality, tokens))


def test_a_planted_square_on_one_photo_is_localised(good_bank, tmp_path):
    config, scorer, good = good_bank
    weld = shutil.copytree(good[0].folder, tmp_path / "weld")
    photo = sorted((weld / "images").glob("*.jpg"))[2]
    with Image.open(photo) as image:
        pixels = np.array(image.convert("RGB"))
    height, width = pixels.shape[:2]
    box = (0.70, 0.35, 0.80, 0.60)  # x0, y0, x1, y1 as fractions
    pixels[int(box[1] * height) : int(box[3] * height), int(box[0] * width) : int(box[2] * width)] = MAGENTA
    Image.fromarray(pixels).save(photo, quality=95)
    views = located(config, scorer, weld, "images")
    top = max(views, key=lambda v: v["score"])
    assert top["view"] == 2
    x, y = top["peak"]
    patch_x, patch_y = 1 / 16, 1 / 7  # one token cell of the cpu preset's 7 x 16 grid
    assert box[0] - patch_x <= x <= box[2] + patch_x and box[1] - patch_y <= y <= box[3] + patch_y


def test_a_planted_bright_interval_in_the_video_is_localised_in_time(good_bank, tmp_path):
    config, scorer, good = good_bank
    weld = shutil.copytree(good[1].folder, tmp_path / "weld")
    video = next(weld.glob("*.avi"))
    capture = cv2.VideoCapture(str(video))
    fps, frames = capture.get(cv2.CAP_PROP_FPS), []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    start, end = 0.45 * len(frames) / fps, 0.65 * len(frames) / fps  # seconds from the start of the video
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FMP4"), fps, frames[0].shape[1::-1])
    for i, frame in enumerate(frames):
        writer.write(np.full_like(frame, 255) if start <= i / fps < end else frame)
    writer.release()
    found = located(config, scorer, weld, "video")
    tubelet = 2 * len(frames) / fps / config.data.video.frames  # seconds one time token spans
    assert start - tubelet <= found["peak_s"] <= end + tubelet
    assert found["profile"][-1][0] <= len(frames) / fps + 1e-6
