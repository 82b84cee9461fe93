"""Errors that the CLI turns into one clear line on stderr and exit status 2."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input (file, row, option): the message names it and says what is wrong."""


class ModalityError(InputError):
    """One modality file of one sample cannot be used; the sample keeps its other modalities."""

    def __init__(self, path: Path | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
