"""Environment and parameter counts per module, without downloading or allocating weights."""

from __future__ import annotations

import os
import platform

import torch

from weldfusion.config import Config
from weldfusion.models.model import WeldFusionModel


def parameter_counts(config: Config) -> dict[str, tuple[int, int]]:
    """Module -> (total, trainable), built on the meta device from the architectures alone."""
    with torch.device("meta"):
        return WeldFusionModel(config, weights=False).parameter_report()


def environment() -> dict[str, str]:
    import lightning
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
        "cuda": ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else "not available",
    }
