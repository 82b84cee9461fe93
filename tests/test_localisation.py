"""Localisation figures: an oracle finds every planted event, a random scorer gets chance, no input is no figure."""

import json

import numpy as np
import pytest

from weldfusion.errors import InputError
from weldfusion.metrics.localisation import (
    TIME_MODALITIES,
    WeldTruth,
    box_mask,
    find_ground_truth,
    localisation_metrics,
    peak_time,
    read_ground_truth,
)

DURATION = 10.0
VIEWS = 5


def planted(count: int, seed: int = 0) -> dict[str, WeldTruth]:
    """`count` defective welds with one random window per recording and a box in two random views,
    and as many Good welds."""
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(count):
        start = rng.uniform(1, 8)
        shifts = rng.uniform(-0.5, 0.5, 3)  # the recordings start at different moments
        windows = {m: [(start + shift, start + shift + rng.uniform(0.2, 1.5))] for m, shift in zip(TIME_MODALITIES, shifts)}
        x0, y0 = rng.uniform(0, 0.7, 2)
        boxes = {int(v): [(x0, y0, x0 + 0.2, y0 + 0.25)] for v in rng.choice(VIEWS, 2, replace=False)}
        truth[f"s/defect{i}"] = WeldTruth("Porosity", windows, boxes)
        truth[f"s/good{i}"] = WeldTruth("Good", {}, {})
    return truth


def times() -> np.ndarray:
    return np.linspace(0, DURATION, 201)


def oracle(truth: dict[str, WeldTruth]) -> tuple[dict, dict]:
    profiles, heatmaps = {}, {}
    for key, weld in truth.items():
        profiles[key] = {m: np.stack([times(), (times() >= a) & (times() <= b)], axis=1) for m, [(a, b)] in weld.windows.items()}
        heatmaps[key] = {v: box_mask(weld.boxes.get(v, []), (45, 100)).astype(float) for v in range(VIEWS)}
    return profiles, heatmaps


def test_oracle_finds_every_planted_event():
    truth = planted(30)
    profiles, heatmaps = oracle(truth)
    figures = localisation_metrics(truth, profiles, heatmaps)
    for m in TIME_MODALITIES:
        assert figures[m]["peak_in_window"] == 1.0 and figures[m]["n"] == 30
        assert figures[m]["per_category"] == {"Porosity": 1.0}
        assert 0 < figures[m]["chance"] < 0.5
    assert figures["images"]["pixel_auroc"] == 1.0 and figures["images"]["peak_in_box"] == 1.0
    assert figures["images"]["n_photos"] == 60 * VIEWS and figures["images"]["n_with_box"] == 60


def test_random_scorer_gets_chance():
    truth = planted(400)
    rng = np.random.default_rng(1)
    profiles = {k: {m: np.stack([times(), rng.random(201)], axis=1) for m in TIME_MODALITIES} for k in truth}
    heatmaps = {k: {v: rng.random((45, 100)) for v in range(VIEWS)} for k in truth}
    figures = localisation_metrics(truth, profiles, heatmaps)
    for m in TIME_MODALITIES:
        assert abs(figures[m]["peak_in_window"] - figures[m]["chance"]) < 0.07  # 400 welds: 3 standard errors
    assert abs(figures["images"]["pixel_auroc"] - 0.5) < 0.02
    assert abs(figures["images"]["peak_in_box"] - figures["images"]["chance"]) < 0.1


def test_tolerance_widens_windows():
    truth = {"s/a": WeldTruth("Spatter", {"audio": [(4.0, 5.0)]}, {})}
    late = {"s/a": {"audio": [[0.0, 0.1], [5.4, 0.9], [9.0, 0.2]]}}
    assert localisation_metrics(truth, late)["audio"]["peak_in_window"] == 1.0
    assert localisation_metrics(truth, late, tolerance=0.2)["audio"]["peak_in_window"] == 0.0


def test_no_profiles_or_heatmaps_is_unavailable_not_zero():
    truth = planted(3)
    figures = localisation_metrics(truth)
    assert all(figures[m] is None for m in TIME_MODALITIES) and figures["images"] is None
    only_audio = {k: {"audio": [[0.0, 1.0], [1.0, 0.0]]} for k in truth}
    figures = localisation_metrics(truth, only_audio)
    assert figures["audio"]["n"] == 3 and figures["video"] is None and figures["sensor"] is None


def test_peak_time_ignores_nan_and_takes_the_first_maximum():
    assert peak_time([[0.0, np.nan], [1.0, 2.0], [2.0, 2.0]]) == 1.0
    assert peak_time([[0.0, np.nan]]) is None
    assert peak_time(np.zeros((0, 2))) is None


def test_large_heatmaps_are_reduced_without_moving_the_box():
    truth = {"s/a": WeldTruth("Porosity", {}, {0: [(0.5, 0.5, 0.6, 0.7)]}), "s/b": WeldTruth("Good", {}, {})}
    heat = box_mask([(0.5, 0.5, 0.6, 0.7)], (900, 2000)).astype(float)
    figures = localisation_metrics(truth, heatmaps={"s/a": {0: heat}, "s/b": {0: np.zeros((900, 2000))}})
    assert figures["images"]["pixel_auroc"] > 0.99 and figures["images"]["peak_in_box"] == 1.0


def test_ground_truth_file_round_trip_and_errors(tmp_path):
    assert find_ground_truth(tmp_path) is None
    path = tmp_path / "ground_truth.json"
    weld = {"category": "Spatter", "recordings": {}, "events": [
        {"kind": "spatter", "windows": {"audio": [1.0, 2.0]}, "photos": [{"view": 2, "box": [0.1, 0.2, 0.3, 0.4]}]}]}  # fmt: skip
    path.write_text(json.dumps({"format": "weldfusion-ground-truth", "version": 1, "welds": {"s/p": weld}}))
    assert find_ground_truth(tmp_path) == path
    truth = read_ground_truth(path)
    assert truth["s/p"] == WeldTruth("Spatter", {"audio": [(1.0, 2.0)]}, {2: [(0.1, 0.2, 0.3, 0.4)]})
    path.write_text(json.dumps({"format": "something else", "welds": {}}))
    with pytest.raises(InputError, match="ground_truth.json"):
        read_ground_truth(path)
