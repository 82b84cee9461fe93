"""The 12 weld categories; the dataset's class code (last two digits of a part number) is the label id."""

from __future__ import annotations

import re

CATEGORIES: tuple[str, ...] = (
    "Good",
    "Excessive_Penetration",
    "Burnthrough",
    "Porosity",
    "Porosity_w_Excessive_Penetration",
    "Undercut",
    "Overlap",
    "Lack_of_Fusion",
    "Excessive_Convexity",
    "Spatter",
    "Warping",
    "Crater_Cracks",
)
GOOD = 0
NUM_CLASSES = len(CATEGORIES)


def _canonical(name: str) -> str:
    """Lower case, no spaces/`-`/`_`/`/`; 'w/', 'with', 'w' all become 'w'."""
    words = re.split(r"[\s_\-/]+", name.strip().lower())
    return "".join("w" if word == "with" else word for word in words if word)


_BY_CANONICAL = {_canonical(name): code for code, name in enumerate(CATEGORIES)}


def category_id(name: str) -> int:
    """Label id of a category name written in any of the dataset's spellings; KeyError if unknown."""
    code = _BY_CANONICAL.get(_canonical(str(name)))
    if code is None:
        raise KeyError(f"unknown category {name!r} (expected one of {', '.join(CATEGORIES)})")
    return code


def category_name(code: int) -> str:
    return CATEGORIES[code]


def code_of_part(part: str) -> int | None:
    """Class code from a part number MM-DD-YY-NNNN-CC, or None when it has no such suffix."""
    match = re.search(r"-(\d{2})$", part)
    return int(match.group(1)) if match and int(match.group(1)) < NUM_CLASSES else None
