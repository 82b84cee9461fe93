"""Memory bank of the token-level anomaly scorer: size, memory, build (coreset) and query time against
the number of Good welds and the coreset ratio, and faiss against torch for the search; then what the
real official split (576 Good TRAIN welds) needs at the `full` preset, extrapolated from the measured
rates. Tokens are random here (build and query cost do not depend on their values); widths and token
counts per weld are the full preset's (video 616 x 1024, photos 5 x 144 x 768, audio 3 x 150 x 768).

    python benchmarks/token_bank.py [--welds 24 48] [--ratios 0.01 0.1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from weldfusion.models.bank import MemoryBank

FULL = {"video": (616, 1024), "images": (720, 768), "audio": (450, 768)}  # tokens per weld, width
REAL_GOOD_TRAIN = 576


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(welds: int, ratio: float, per_weld: int, width: int, rng: np.random.Generator) -> dict:
    tokens = rng.normal(size=(welds * per_weld, width)).astype(np.float32)
    owners = np.repeat(np.arange(welds), per_weld)
    bank, build = timed(lambda: MemoryBank.build(tokens, owners, ratio))
    query = rng.normal(size=(per_weld, width)).astype(np.float32)
    bank.distances(query[:1])  # the faiss index is built once
    _, faiss_s = timed(lambda: bank.distances(query))
    _, torch_s = timed(lambda: torch.cdist(torch.from_numpy(query), bank.tokens).min(1).values)
    return {"kept": len(bank.tokens), "mib": bank.nbytes / 2**20, "build": build, "faiss": faiss_s, "torch": torch_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--welds", type=int, nargs="+", default=[24, 48])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.01, 0.1])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    print(f"torch threads {torch.get_num_threads()}; video tokens at the full preset ({FULL['video'][0]} x {FULL['video'][1]} per weld)")
    print(f"{'welds':>6} {'ratio':>6} {'kept':>7} {'MiB':>7} {'build s':>8} {'query/weld faiss s':>19} {'torch s':>8} {'torch/faiss':>11}")
    rates = {}
    for ratio in args.ratios:
        for welds in args.welds:
            r = measure(welds, ratio, *FULL["video"], rng)
            rates[ratio] = (welds, r)
            print(f"{welds:>6} {ratio:>6} {r['kept']:>7} {r['mib']:>7.1f} {r['build']:>8.2f} {r['faiss']:>19.4f} "
                  f"{r['torch']:>8.4f} {r['torch'] / r['faiss']:>11.2f}")  # fmt: skip
    print(f"\nreal official split, {REAL_GOOD_TRAIN} Good TRAIN welds, full preset (extrapolated from the largest run per ratio):")
    for ratio, (welds, r) in rates.items():
        scale = REAL_GOOD_TRAIN / welds
        total_mib = sum(REAL_GOOD_TRAIN * n * ratio * d * 4 for n, d in FULL.values()) / 2**20
        all_tokens_gib = sum(REAL_GOOD_TRAIN * n * d * 4 for n, d in FULL.values()) / 2**30
        build = r["build"] * scale**2 * sum(n for n, _ in FULL.values()) / FULL["video"][0]  # picks x tokens: quadratic
        query = r["faiss"] * scale * sum(n * d for n, d in FULL.values()) / (FULL["video"][0] * FULL["video"][1])
        print(f"  ratio {ratio}: banks {total_mib:.0f} MiB (all tokens before subsampling {all_tokens_gib:.1f} GiB in RAM "
              f"while fitting); coreset build ~{build / 60:.0f} min on this CPU; query ~{query:.2f} s per weld (faiss)")  # fmt: skip


if __name__ == "__main__":
    main()
