"""What is wrong with the data, one record per finding (SPEC §10 `problems`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    sample: str | None  # the manifest's SUBDIRS value (None: the manifest itself)
    modality: str | None  # None for row-level problems
    problem: str
    masked: bool = True  # False: reported only (e.g. a truncated but readable video)

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def __str__(self) -> str:
        where = " / ".join(x for x in (self.sample, self.modality) if x) or "manifest"
        return f"{where}: {self.problem}"
