import json
import shutil
import subprocess
import sys

import pytest

from weldfusion.cli.main import main
from tests.conftest import REAL_MANIFEST


def test_console_script_and_module_entry_points(tmp_path):
    exe = shutil.which("weldfusion") or str(__import__("pathlib").Path(sys.executable).with_name("weldfusion"))
    result = subprocess.run([exe, "synth", str(tmp_path / "d"), "--per-class", "1", "--seconds", "0.5"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = subprocess.run([sys.executable, "-m", "weldfusion", "data", "check", str(tmp_path / "d")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "13 rows, 13 usable" in result.stdout


def test_data_check_json_contract(synth_root, tmp_path, capsys):
    assert main(["data", "check", str(synth_root), "--json", str(tmp_path / "c.json")]) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    for key in ("rows", "usable", "counts", "modalities", "problems", "sessions_crossing_splits", "supervised_ready", "warnings"):
        assert key in report
    assert report["usable"] == report["rows"] and report["problems"] == []
    assert report["supervised_ready"] is True and report["sessions_crossing_splits"] == 0
    assert report["counts"]["Good"]["train"] >= 2


def test_data_check_on_corrupt_data_names_every_problem(corrupt_root, tmp_path, capsys):
    root, keys = corrupt_root["root"], corrupt_root["keys"]
    code = main(["data", "check", str(root), "--json", str(tmp_path / "c.json")])
    captured = capsys.readouterr()
    assert code == 2  # the unknown category makes the manifest unusable for training
    assert captured.err.count("\n") == 1 and "unknown category 'Cold_Lap'" in captured.err and "row " in captured.err
    report = json.loads((tmp_path / "c.json").read_text())
    found: dict = {}
    for p in report["problems"]:
        found[(p["sample"], p["modality"])] = found.get((p["sample"], p["modality"]), "") + p["problem"] + "; "
    assert "missing file" in found[(keys["missing_flac"], "audio")]
    assert "images/*.jpg" in found[(keys["no_images"], "images")]
    assert (keys["three_images"], "images") not in found
    assert "'..'" in found[(keys["escape"], None)]
    assert "truncated" in found[(keys["truncated_video"], "video")]  # reported, still usable
    assert "interpolated" in found[(keys["nan_csv"], "sensor")]
    masked = {(p["sample"], p["modality"]) for p in report["problems"] if p["masked"]}
    assert (keys["truncated_video"], "video") not in masked and (keys["missing_flac"], "audio") in masked
    assert report["usable"] == report["rows"] - 3  # unknown category, escaping row, the weld with no file


def test_data_check_real_manifest_without_media(tmp_path, capsys):
    shutil.copy(REAL_MANIFEST, tmp_path / "manifest.csv")
    code = main(["data", "check", str(tmp_path), "--json", str(tmp_path / "c.json")])
    captured = capsys.readouterr()
    assert code == 2 and "no usable sample" in captured.err and captured.err.count("\n") == 1
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["rows"] == 4040 and report["usable"] == 0
    assert report["counts"]["Good"] == {"train": 576, "val": 122, "test": 121}
    assert report["counts"]["Crater_Cracks"] == {"val": 80, "test": 81}
    assert report["sessions"]["Good"] == 55 and sum(report["sessions"].values()) == 236
    assert all(n == 0 for n in report["modalities"].values())
    assert len(report["problems"]) == 4040 and all("not found" in p["problem"] for p in report["problems"])
    assert report["sessions_crossing_splits"] == 216 and report["supervised_ready"] is False
    assert any("only Good welds" in w for w in report["warnings"])
    assert any("recipe columns together name the category of 95%" in w for w in report["warnings"])


def test_data_split_writes_a_leak_free_manifest(tmp_path, capsys):
    shutil.copy(REAL_MANIFEST, tmp_path / "manifest.csv")
    assert main(["data", "split", str(tmp_path), "--out", str(tmp_path / "new.csv"), "--seed", "1"]) == 0
    assert "sessions crossing splits in the new manifest: 0" in capsys.readouterr().out
    code = main(["data", "check", str(tmp_path), "--manifest", str(tmp_path / "new.csv"), "--quick",
                 "--json", str(tmp_path / "c.json")])  # fmt: skip
    report = json.loads((tmp_path / "c.json").read_text())
    assert code == 2 and report["sessions_crossing_splits"] == 0  # exit 2: no media here
    assert all(splits.get("train", 0) >= 100 for splits in report["counts"].values())


@pytest.mark.parametrize(
    "argv,message",
    [(["data", "check", "/nonexistent"], "dataset root not found"),
     (["data", "split", "/nonexistent", "--out", "x.csv"], "manifest not found"),
     (["synth", "/tmp/x", "--per-class", "0"], "--per-class"),
     (["evaluate", "/nonexistent"], "not a weldfusion run folder"),
     (["info", "--preset", "nope"], "unknown preset"),
     (["info", "--set", "train.epochs=many"], "config: train.epochs: Input should be a valid integer")],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_usage_error_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "check"])
    assert exc.value.code == 2
