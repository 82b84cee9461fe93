import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from sklearn.neighbors import KNeighborsClassifier

from weldfusion.cli.main import main
from weldfusion.metrics import knn
from weldfusion.protocols.anomaly import fuse, weight_grid
from weldfusion.metrics.figures import auroc, equal_error_threshold
from weldfusion.evaluation.evaluate import evaluate_run
from tests.conftest import copy_dataset

SPEC_KEYS = ("protocol", "split", "n_reference", "n_query", "k", "metric", "accuracy", "f1_macro", "f1_weighted",
             "precision_weighted", "recall_weighted", "per_class", "labels", "confusion_matrix", "auroc_defect",
             "auroc_per_defect", "per_modality", "skipped", "checkpoint", "timestamp", "data_fingerprint")  # fmt: skip


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "manhattan"])
def test_knn_majority_vote_matches_scikit_learn(metric):
    rng = np.random.default_rng(0)
    reference, query = rng.normal(size=(120, 8)), rng.normal(size=(40, 8))
    labels = rng.integers(0, 5, 120)
    probabilities = knn.vote(knn.search(reference, query, 7, metric), labels, 12, metric)
    expected = KNeighborsClassifier(7, metric=metric, algorithm="brute").fit(reference, labels)
    np.testing.assert_allclose(probabilities[:, :5], expected.predict_proba(query))
    assert (knn.predict(probabilities) == expected.predict(query)).all()


def test_temperature_weighted_votes_follow_similarity():
    reference = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    neighbours = knn.search(reference, np.array([[1.0, 0.05]]), 3, "cosine")
    sharp = knn.vote(neighbours, np.array([0, 0, 1]), 2, "cosine", temperature=0.01)
    flat = knn.vote(neighbours, np.array([0, 0, 1]), 2, "cosine", temperature=100.0)
    assert sharp[0, 0] > 0.999 and flat[0, 0] == pytest.approx(2 / 3, abs=0.01)


def test_leave_one_out_search_excludes_the_query_itself():
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    loo = knn.search(points, points, 1, "euclidean", exclude_self=True)
    assert loo.indices[:, 0].tolist() == [1, 0, 1, 2]


def test_auroc_per_defect_and_equal_error_rate():
    labels = np.array([0, 0, 0, 0, 3, 3, 7, 7])
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.8, 0.35, 0.05])
    overall, per_type = auroc(labels, score)
    assert per_type == {"Porosity": 1.0, "Lack_of_Fusion": 0.375}
    assert overall == pytest.approx(0.6875)
    assert auroc(np.array([0, 0]), np.array([0.1, 0.2]))[0] is None  # no defect: undefined
    assert 0.3 < equal_error_threshold(labels != 0, score) <= 0.8


def test_fusion_weights_grid_and_missing_modalities():
    grid = weight_grid(["a", "b", "c"], 0.5)
    assert {tuple(g.values()) for g in grid} == {(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)}
    fused = fuse({"a": np.array([1.0, np.nan]), "b": np.array([3.0, 4.0])}, {"a": 0.25, "b": 0.75})
    np.testing.assert_allclose(fused, [2.5, 4.0])  # a missing modality drops out of the weighted mean


@pytest.fixture(scope="module")
def classify_eval(trained_run):
    return evaluate_run(trained_run, "test")


def test_classify_metrics_follow_the_contract(classify_eval, trained_run):
    metrics = json.loads((trained_run / "eval" / "test" / "metrics.json").read_text())
    for key in SPEC_KEYS:
        assert key in metrics, key
    assert metrics["protocol"] == "classify" and metrics["n_query"] > 0 and metrics["k"] == 5
    assert set(metrics["per_modality"]) == set(metrics["without_modality"]) == {"video", "images", "audio", "sensor"}
    for figures in [*metrics["per_modality"].values(), *metrics["without_modality"].values()]:
        assert {"accuracy", "f1_macro", "f1_weighted", "auroc_defect"} <= set(figures)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == metrics["n_query"] and matrix.shape == (len(metrics["labels"]),) * 2
    assert metrics["auroc_defect"] is not None and len(metrics["auroc_per_defect"]) == 11
    for picture in ("confusion_matrix.png", "roc_curves.png", "embedding_map.png", "report.html"):
        assert (trained_run / "eval" / "test" / picture).stat().st_size > 1000


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("headless Chromium is not installed (make test installs Debian's chromium where it can)")
    return found


def test_report_renders_in_chromium_with_the_numbers_of_metrics_json(classify_eval, tmp_path):
    browser = chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    url = classify_eval.report.resolve().as_uri()
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    shot = tmp_path / "page.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,2000", url], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert dom.count('src="data:image/png;base64,') == 3
    metrics = json.loads(classify_eval.report.with_name("metrics.json").read_text())
    cells = re.findall(r'<td data-metric="([^"]+)">([^<]*)</td>', dom)
    assert len(cells) > 40
    for path, text in cells:
        value = metrics
        for part in path.split("."):
            value = value[part]
        assert text == ("–" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)), path


@pytest.fixture(scope="module")
def anomaly_run(official_root, official_run):
    return official_root, official_run


def test_anomaly_protocol_end_to_end(anomaly_run):
    root, run = anomaly_run
    result = evaluate_run(run, "test")
    m = result.metrics
    assert m["protocol"] == "anomaly" and m["accuracy"] is None and m["confusion_matrix"] is None
    assert 0.5 < m["auroc_defect"] <= 1.0 and len(m["auroc_per_defect"]) == 11
    assert set(m["per_modality"]) == {"video", "images", "audio", "sensor"} and m["scorer"] == "tokens"
    assert set(m["scorers"]) == {"tokens", "pooled"} and "concatenated" in m["scorers"]["pooled"]["per_modality"]
    assert m["scorers"]["tokens"]["auroc_defect"] == m["auroc_defect"]
    assert m["token_banks"]["banks"]["video"]["kept"] < m["token_banks"]["banks"]["video"]["total"]
    assert sum(m["weights"].values()) == pytest.approx(1.0) and m["weight_selection"]["on"] == "val"
    assert m["paper"]["overall"]["paper_fused"] == 0.9178 and m["paper"]["Warping"]["ours_fused"] is not None
    assert {"threshold", "defect_recall", "false_alarm_rate"} <= set(m["decision"])
    page = result.report.read_text()
    assert "Against the dataset paper" in page and "0.9178" in page and "Anomaly scorers side by side" in page
    assert "top1_" in page and list((run / "eval" / "test").glob("top1_*_timeline.png"))


def test_predict_reports_missing_modalities_and_refuses_bad_folders(trained_run, synth_root, tmp_path, capsys):
    weld = copy_dataset(next(p for p in (synth_root).glob("spatter_*/*") if p.is_dir()), tmp_path / "weld")
    next(weld.glob("*.flac")).unlink()
    (tmp_path / "empty").mkdir()
    code = main(["predict", str(trained_run), str(weld), str(tmp_path / "empty"), "--json", str(tmp_path / "p.json")])
    assert code == 2  # one folder refused, the other predicted
    err = capsys.readouterr().err
    assert "empty: no usable modality" in err
    result = json.loads((tmp_path / "p.json").read_text())
    (prediction,) = result["predictions"]
    assert "missing file" in prediction["available"]["audio"] and prediction["available"]["video"] == "ok"
    assert prediction["category"] is not None and 0 <= prediction["probability"] <= 1
    assert len(prediction["nearest"]) == 5 and prediction["decision"] in ("good", "defect")
    assert prediction["fusion_share"]["audio"] == 0.0 and sum(prediction["fusion_share"].values()) == pytest.approx(1, abs=0.01)


def test_predict_with_an_anomaly_run(anomaly_run, tmp_path):
    root, run = anomaly_run
    welds = [p for p in root.glob("*/*") if p.is_dir()][:2]
    assert main(["predict", str(run), *map(str, welds), "--json", str(tmp_path / "p.json")]) == 0
    predictions = json.loads((tmp_path / "p.json").read_text())["predictions"]
    assert len(predictions) == 2 and all(set(p["modality_scores"]) == {"video", "images", "audio", "sensor"} for p in predictions)
    located = predictions[0]["localisation"]
    for modality in ("video", "audio", "sensor"):
        profile = np.array(located[modality]["profile"])
        assert profile.shape[1] == 2 and np.all(np.diff(profile[:, 0]) > 0) and profile[:, 0].min() >= 0
        assert located[modality]["peak_s"] == profile[np.argmax(profile[:, 1]), 0]
    views = located["images"]
    assert [v["view"] for v in views] == list(range(5)) and all(0 <= c <= 1 for v in views for c in v["peak"])
    assert main(["predict", str(run), str(welds[0]), "--explain", str(tmp_path / "why")]) == 0
    names = sorted(p.name for p in (tmp_path / "why").iterdir())
    assert names == [f"000_{welds[0].name}_timeline.png", *(f"000_{welds[0].name}_view{k}.png" for k in range(5))]
    assert all(Image.open(tmp_path / "why" / n).size[0] > 300 for n in names)


def test_evaluate_on_other_data_lists_skipped_welds(trained_run, corrupt_root, tmp_path):
    root = copy_dataset(corrupt_root["root"], tmp_path / "data")
    frame = (root / "manifest.csv").read_text().splitlines()
    (root / "manifest.csv").write_text("\n".join(line for line in frame if "Cold_Lap" not in line) + "\n")
    metrics = evaluate_run(trained_run, "test", data=root).metrics
    keys = corrupt_root["keys"]
    assert keys["escape"] in metrics["skipped"] and keys["all_missing"] in metrics["skipped"]
    assert metrics["data_root"] == str(root)
