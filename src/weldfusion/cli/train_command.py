"""`weldfusion train` and `weldfusion diagnose`."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from weldfusion.cli.console import err, out, progress_bar
from weldfusion.cli.options import add_config_options, config_from
from weldfusion.errors import InputError
from weldfusion.evaluation.anomaly import fit_anomaly
from weldfusion.evaluation.classify import calibrate_threshold
from weldfusion.evaluation.context import open_context
from weldfusion.training.run import train


def add_train(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="train a model into a run folder")
    p.add_argument("root", type=Path, metavar="ROOT", help="dataset root holding manifest.csv")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="run folder to write")
    add_config_options(p)
    p.add_argument("--protocol", choices=("classify", "anomaly"), help="default: the preset's (classify)")
    p.add_argument("--manifest", type=Path, help="manifest to use instead of ROOT/manifest.csv")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN from its last checkpoint")
    p.add_argument("--devices", type=int, default=1, help="devices per node (DDP when > 1)")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, ... (Lightning)")
    p.add_argument("--debug", action="store_true", help="report labels, pairs, features and gradients of the first batches")
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    config = config_from(args)
    if args.protocol:
        config.protocol = args.protocol
    if not args.resume and not (args.root / "manifest.csv").is_file() and args.manifest is None:
        raise InputError(f"{args.root}: no manifest.csv (give the dataset root, or --manifest)")
    if config.protocol == "anomaly":
        fit_anomaly(args.root, args.out, config, args.manifest, say=out.print)
        return 0
    with progress_bar("caching frozen-encoder features", 0) as advance:
        result = train(args.root, args.out, config, args.manifest, args.resume, args.devices, args.num_nodes,
                       args.accelerator, args.debug, say=out.print,
                       progress=lambda modality, done, total: advance(done, total),
                       progress_bar=err.is_terminal)  # fmt: skip
    best = f", best validation loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    out.print(f"trained {result.epochs} epoch(s){best}; run folder {result.run}")
    threshold = calibrate_threshold(open_context(result.run))
    out.print(f"defect-score threshold for predict: {threshold['threshold']:.3f} ({threshold['chosen_on']})")
    return 0


def add_diagnose(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("diagnose", help="a few training steps with full diagnostics (no run folder kept)")
    p.add_argument("root", type=Path, metavar="ROOT")
    add_config_options(p)
    p.add_argument("--manifest", type=Path)
    p.set_defaults(handler=run_diagnose)


def run_diagnose(args: argparse.Namespace) -> int:
    config = config_from(args)
    config.train.epochs = 1
    config.train.flat_loss_steps = min(config.train.flat_loss_steps, max(config.train.debug_batches, 2))
    with tempfile.TemporaryDirectory() as tmp:
        train(args.root, Path(tmp) / "run", config, args.manifest, debug=True, say=out.print)
    return 0
