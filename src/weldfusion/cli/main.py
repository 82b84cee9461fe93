"""The `weldfusion` command (SPEC §10). Bad input ends in one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys

from weldfusion import __version__
from weldfusion.cli import data_commands
from weldfusion.cli.demo_command import add_demo
from weldfusion.cli.evaluate_command import add_evaluate
from weldfusion.cli.info_command import add_info
from weldfusion.cli.monitor_command import add_monitor
from weldfusion.cli.predict_command import add_predict
from weldfusion.cli.train_command import add_diagnose, add_train
from weldfusion.cli.console import err
from weldfusion.errors import InputError, describe_os_error


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 2
        err.print(f"[red]error:[/] {self.prog}: {message}", highlight=False)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="weldfusion", description="Quad-modal welding defect detection (video, photos, audio, sensor log).")
    parser.add_argument("--version", action="version", version=f"weldfusion {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    data_commands.add_synth(commands)
    data = commands.add_parser("data", help="check a dataset or write a session-disjoint split")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser, metavar="COMMAND")
    data_commands.add_check(data_sub)
    data_commands.add_split(data_sub)
    add_train(commands)
    add_diagnose(commands)
    add_evaluate(commands)
    add_predict(commands)
    add_monitor(commands)
    add_info(commands)
    add_demo(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every ending is one line: input and operating-system errors exit 2, Ctrl-C exits 130."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except InputError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(describe_os_error(exc))
    except KeyboardInterrupt:
        hint = _resume_hint(args)
        err.print(f"[yellow]interrupted[/]{'; ' + hint if hint else ''}", highlight=False, soft_wrap=True)
        return 130


def _fail(message: str) -> int:
    err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return 2


def _resume_hint(args: argparse.Namespace) -> str:
    if args.command == "train" and getattr(args, "protocol", None) != "anomaly":
        return f"resume with: weldfusion train {args.root} --out {args.out} --resume"
    return ""


if __name__ == "__main__":
    sys.exit(main())
