"""Options shared by the commands that take a configuration."""

from __future__ import annotations

import argparse

from weldfusion.config import Config, load_config


def add_config_options(parser: argparse.ArgumentParser, default: str = "cpu") -> None:
    parser.add_argument("--preset", default=default, help="cpu, full, or a YAML file (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set train.epochs=5 (repeatable)")  # fmt: skip


def config_from(args: argparse.Namespace) -> Config:
    return load_config(args.preset, args.overrides)
