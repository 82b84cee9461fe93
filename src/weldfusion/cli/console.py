"""Rich consoles and a progress bar shared by the commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)  # fmt: skip
from rich.text import Text

out = Console()
err = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second, e.g. `12.5 welds/s`."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} {self.unit}/s" if task.speed else "")


@contextmanager
def progress_bar(description: str, total: int, unit: str = "welds") -> Iterator:
    """Yields `advance(done, total)`; draws a bar with the rate in `unit`s per second on a terminal,
    stays quiet in logs."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(unit), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err, transient=False, disable=not err.is_terminal) as bar:  # fmt: skip
        task = bar.add_task(description, total=total)
        yield lambda done, total_=total: bar.update(task, completed=done, total=total_)
