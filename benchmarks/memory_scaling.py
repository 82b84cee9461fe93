"""Peak resident memory of `weldfusion train --preset cpu` on ~200 vs ~800 synthetic welds.

Memory must be bounded by the batch, not the dataset: welds are decoded per item, cached tokens are
read per item, nothing holds the whole dataset. Each training runs in a fresh process tree (its
DataLoader workers included), and the ratio of the two peaks is printed.

    python benchmarks/memory_scaling.py [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from weldfusion.synth.generate import synthesize

MEASURE = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_mib(command: list[str]) -> float:
    """Peak RSS (MiB) of the largest process in the command's tree (main process or a worker)."""
    result = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
    code, kib = result.stdout.split()
    if code != "0":
        raise RuntimeError(f"{' '.join(command)} exited with {code}")
    return int(kib) / 1024


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for per_class in (15, 61):
            root = Path(tmp) / f"d{per_class}"
            synthesize(root, per_class=per_class, seconds=3.0, size="small", split="supervised", seed=0)
            welds = sum(1 for _ in (root / "manifest.csv").open()) - 1
            command = [sys.executable, "-m", "weldfusion", "train", str(root), "--out", str(Path(tmp) / f"run{per_class}"),
                       "--set", f"train.epochs={args.epochs}", "--set", f"cache.dir={Path(tmp) / 'cache'}"]  # fmt: skip
            results[welds] = round(peak_mib(command), 1)
            print(f"{welds:4d} welds: peak RSS {results[welds]:.1f} MiB")
    small, large = sorted(results)
    ratio = results[large] / results[small]
    print(f"{large / small:.1f}x the welds -> {ratio:.2f}x the peak memory")
    out = {"peak_mib": results, "welds_ratio": round(large / small, 2), "memory_ratio": round(ratio, 3)}
    print(json.dumps({"memory_scaling": out}))
    return out


if __name__ == "__main__":
    main()
