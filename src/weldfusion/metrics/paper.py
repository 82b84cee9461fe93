"""The dataset authors' figures (arXiv 2409.02290, TEST split, AUROC good-vs-defect; DATASET.md):
unsupervised audio 1D-CNN autoencoder, video SlowFast + autoencoder, and their 0.37/0.63 fusion."""

PAPER_OVERALL = {"audio": 0.8460, "video": 0.8977, "fused": 0.9178}

PAPER_PER_DEFECT = {  # defect type -> (audio, video, fused)
    "Excessive_Penetration": (0.781, 0.875, 0.889),
    "Burnthrough": (0.702, 0.900, 0.871),
    "Porosity": (0.995, 0.987, 0.990),
    "Porosity_w_Excessive_Penetration": (0.966, 0.987, 0.988),
    "Undercut": (0.899, 0.927, 0.948),
    "Overlap": (0.974, 0.852, 0.931),
    "Lack_of_Fusion": (0.837, 0.778, 0.846),
    "Excessive_Convexity": (0.884, 0.984, 0.982),
    "Spatter": (0.780, 0.965, 0.958),
    "Warping": (0.765, 0.746, 0.798),
    "Crater_Cracks": (0.945, 0.844, 0.927),
}


def paper_comparison(overall: float | None, per_type: dict, per_modality: dict) -> dict:
    """Our TEST AUROC (overall and per defect type; fused, audio, video) beside the paper's."""
    def ours(modality: str, name: str | None) -> float | None:
        figures = per_modality.get(modality, {})
        return figures.get("auroc_defect") if name is None else figures.get("auroc_per_defect", {}).get(name)

    rows = {"overall": {"paper_audio": PAPER_OVERALL["audio"], "paper_video": PAPER_OVERALL["video"],
                        "paper_fused": PAPER_OVERALL["fused"], "ours_audio": ours("audio", None),
                        "ours_video": ours("video", None), "ours_fused": overall}}  # fmt: skip
    for name, (audio, video, fused) in PAPER_PER_DEFECT.items():
        rows[name] = {"paper_audio": audio, "paper_video": video, "paper_fused": fused, "ours_audio": ours("audio", name),
                      "ours_video": ours("video", name), "ours_fused": per_type.get(name)}  # fmt: skip
    return rows
