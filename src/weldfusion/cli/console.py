"""Rich consoles and a progress bar shared by the commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

out = Console()
err = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator:
    """Yields `advance(done, total)`; draws a bar on a terminal, stays quiet in logs."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err, transient=False, disable=not err.is_terminal) as bar:  # fmt: skip
        task = bar.add_task(description, total=total)
        yield lambda done, total_=total: bar.update(task, completed=done, total=total_)
