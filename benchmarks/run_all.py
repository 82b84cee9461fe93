"""`make bench`: every benchmark in its own process; one JSON (.bench/results.json) and a short table."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = ["loader_vs_decode.py", "cache_speedup.py", "inference_latency.py", "memory_scaling.py"]


def main() -> int:
    results, failed = {}, []
    for name in BENCHMARKS:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        run = subprocess.run([sys.executable, str(HERE / name)], capture_output=True, text=True)
        print(run.stdout, end="")
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        if run.returncode or not lines:
            failed.append(name)
            print(run.stderr[-2000:])
            continue
        results.update(json.loads(lines[-1]))
        results[name[:-3]]["wall_s"] = round(time.perf_counter() - start, 1)
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\nsummary (ratios measured within one run each):")
    for name, figures in results.items():
        flat = {k: (v.get("ratio", v) if isinstance(v, dict) else v) for k, v in figures.items()}
        print(f"  {name:<18} {json.dumps(flat)}")
    print(f"written to {out / 'results.json'}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
