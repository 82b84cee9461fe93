"""The README's main job, shortened: synth -> check -> train -> evaluate -> anomaly, via the CLI (on the easy
synthetic welds, whose global signatures make the pipeline's figures predictable; `make demo` runs realistic ones)."""

import json
import subprocess
import sys


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "weldfusion", "demo", "--out", "demo", "--per-class", "20",
                             "--epochs", "15", "--difficulty", "easy"], capture_output=True, text=True, timeout=900, cwd=tmp_path)  # relative --out, as in `make demo`  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    classify, anomaly = summary["classify"], summary["anomaly"]
    best_single = max(summary["classify_per_modality_f1_macro"].values())
    # the synthetic classes are built so that no modality alone can tell them all apart
    assert classify["f1_macro"] >= best_single + 0.1
    assert best_single < 0.5
    assert anomaly["auroc_defect"] >= 0.95 and len(anomaly["auroc_per_defect"]) == 11
    for report in summary["reports"].values():
        assert (out / "runs").exists() and report.endswith("report.html")
    assert "macro-F1" in result.stdout and "anomaly" in result.stdout
