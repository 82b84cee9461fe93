"""`weldfusion train` and `weldfusion diagnose`: parse, then hand over to `weldfusion.engine.fit_run`."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from weldfusion.cli.console import err, out, progress_bar
from weldfusion.cli.options import add_config_options, config_from
from weldfusion.config import Accelerator, choices, load_config
from weldfusion.engine import fit_run
from weldfusion.errors import InputError
from weldfusion.registry import PROTOCOLS
from weldfusion.runs import RESUMABLE


def add_train(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="fit a protocol into a run folder (classify: SupCon training; anomaly: fitting)")
    p.add_argument("root", type=Path, metavar="ROOT", help="dataset root holding manifest.csv")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="run folder to write")
    add_config_options(p)
    p.add_argument("--protocol", choices=PROTOCOLS.names(), help="default: the preset's (classify)")
    p.add_argument("--manifest", type=Path, help="manifest to use instead of ROOT/manifest.csv")
    p.add_argument("--resume", action="store_true",
                   help=f"continue the run in RUN from its last checkpoint; --set may change {', '.join(RESUMABLE)}")  # fmt: skip
    p.add_argument("--devices", type=int, default=1, help="devices per node (DDP when > 1)")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--accelerator", choices=choices(Accelerator), default="auto")
    p.add_argument("--debug", action="store_true", help="report labels, pairs, features and gradients of the first batches")
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    if args.devices < 1 or args.num_nodes < 1:
        raise InputError(f"--devices {args.devices} / --num-nodes {args.num_nodes}: must be >= 1")
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        raise InputError("--accelerator gpu: no CUDA GPU is visible to this PyTorch (a CPU build, or no driver); use auto or cpu")
    options = {"devices": args.devices, "num_nodes": args.num_nodes, "accelerator": args.accelerator, "debug": args.debug,
               "progress_bar": err.is_terminal}  # fmt: skip
    with progress_bar("caching frozen-encoder features", 0) as advance:
        progress = lambda modality, done, total: advance(done, total)  # noqa: E731
        if args.resume:
            fit_run(args.out, resume=True, overrides=args.overrides, protocol=args.protocol, say=out.print,
                    progress=progress, **options)  # fmt: skip
            return 0
        if not (args.root / "manifest.csv").is_file() and args.manifest is None:
            raise InputError(f"{args.root}: no manifest.csv (give the dataset root, or --manifest)")
        config = load_config(args.preset, args.overrides + ([f"protocol={args.protocol}"] if args.protocol else []))
        fit_run(args.out, args.root, config, args.manifest, say=out.print, progress=progress, **options)
    return 0


def add_diagnose(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("diagnose", help="a few training steps with full diagnostics (no run folder kept)")
    p.add_argument("root", type=Path, metavar="ROOT")
    add_config_options(p)
    p.add_argument("--manifest", type=Path)
    p.set_defaults(handler=run_diagnose)


def run_diagnose(args: argparse.Namespace) -> int:
    config = config_from(args)
    config = config.copy_with(["protocol=classify", "train.epochs=1",
                               f"train.flat_loss_steps={min(config.train.flat_loss_steps, max(config.train.debug_batches, 2))}"])  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        fit_run(Path(tmp) / "run", args.root, config, args.manifest, say=out.print, debug=True)
    return 0
