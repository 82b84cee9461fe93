"""`python tests/ddp_probe.py LOG_DIR ARGS...`: the weldfusion command line, each process recording the
feature-cache entries it stores in LOG_DIR/rank-<LOCAL_RANK>.txt (Lightning relaunches this script
for the other DDP ranks)."""

import os
import sys
from pathlib import Path

from weldfusion.cli.main import main
from weldfusion.models.cache import FeatureCache

LOG = Path(sys.argv[1]) / f"rank-{os.environ.get('LOCAL_RANK', '0')}.txt"
_store = FeatureCache.store


def recorded_store(self: FeatureCache, sample, *args, **kwargs) -> None:
    with LOG.open("a") as f:
        f.write(f"{self.modality} {sample.key}\n")
    _store(self, sample, *args, **kwargs)


FeatureCache.store = recorded_store
sys.exit(main(sys.argv[2:]))
