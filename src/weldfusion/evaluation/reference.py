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
