"""`weldfusion info`: the environment and the parameter counts per module (no weights needed)."""

from __future__ import annotations

import argparse

from rich.table import Table

from weldfusion.cli.console import out
from weldfusion.cli.options import add_config_options, config_from
from weldfusion.models.info import environment, parameter_counts


def add_info(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("info", help="environment, and parameter counts per module (no weights needed)")
    add_config_options(p)
    p.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    config = config_from(args)
    for key, value in environment().items():
        out.print(f"{key:>13}: {value}", highlight=False)
    counts = parameter_counts(config)
    table = Table(title=f"parameters of the {args.preset} preset ({', '.join(config.model.modalities)})")
    table.add_column("module")
    table.add_column("source")
    table.add_column("total", justify="right")
    table.add_column("trainable", justify="right")
    for name, (total, trainable) in counts.items():
        modality = name.split(".")[-1]
        spec = getattr(config.model, modality, None) if name.startswith("encoders.") else None
        source = (spec.pretrained or "random init") if spec is not None and hasattr(spec, "pretrained") else ""
        table.add_row(name, source, f"{total:,}", f"{trainable:,}", style="bold" if name == "total" else None)
    out.print(table)
    return 0
