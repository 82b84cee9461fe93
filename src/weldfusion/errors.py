"""Errors that the CLI turns into one clear line on stderr and exit status 2."""

from __future__ import annotations

import errno
from pathlib import Path


class InputError(Exception):
    """Bad user input (file, row, option): the message names it and says what is wrong."""


class ModalityError(InputError):
    """One modality file of one sample cannot be used; the sample keeps its other modalities."""

    def __init__(self, path: Path | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


_ADVICE = {
    errno.ENOSPC: "no space left on the device: free space, or write elsewhere (--out, cache.dir, $WELDFUSION_CACHE)",
    errno.EDQUOT: "disk quota exceeded: free space, or write elsewhere (--out, cache.dir, $WELDFUSION_CACHE)",
    errno.EROFS: "read-only file system: write elsewhere (--out, cache.dir, $WELDFUSION_CACHE)",
    errno.EACCES: "permission denied: choose a location you can write (or read)",
    errno.EPERM: "operation not permitted: choose a location you can write (or read)",
    errno.EISDIR: "is a directory: give a file name",
    errno.ENOTDIR: "a part of this path is a file, not a directory",
    errno.ENAMETOOLONG: "name too long for the file system: choose a shorter path",
    errno.ENOENT: "no such file or directory",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the path and what to do."""
    where = exc.filename if exc.filename is not None else "weldfusion"
    advice = _ADVICE.get(exc.errno or -1) or (exc.strerror or str(exc)).strip().splitlines()[0]
    return f"{where}: {advice}"
