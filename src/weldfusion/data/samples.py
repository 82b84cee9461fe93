"""The sample table: one typed record per weld, with its files per modality and what is missing.

A sample's folder is `<root>/<SUBDIRS>`; its files are `<part>.avi`, `<part>.flac`, `<part>.csv` and
`images/*.jpg` (sorted). Nothing outside the root is ever opened: SUBDIRS that are absolute, contain
`..` or resolve through a link to outside the root are rejected and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from weldfusion.data.categories import GOOD
from weldfusion.data.manifest import Manifest
from weldfusion.data.problems import Problem
from weldfusion.errors import InputError
from weldfusion.registry import MODALITIES

@dataclass(frozen=True)
class Sample:
    key: str  # SUBDIRS: unique (part numbers repeat across sessions)
    session: str  # DIRECTORY
    label: int
    split: str | None
    folder: Path
    files: dict[str, tuple[Path, ...]] = field(default_factory=dict)  # modality -> file(s), found ones only
    missing: dict[str, str] = field(default_factory=dict)  # modality -> why it is unavailable

    @property
    def part(self) -> str:
        return PurePosixPath(self.key).name

    def available(self, modality: str) -> bool:
        return modality in self.files and modality not in self.missing

    def without(self, modality: str, reason: str) -> Sample:
        """A copy with `modality` marked unavailable for `reason`."""
        return Sample(self.key, self.session, self.label, self.split, self.folder, self.files,
                      {**self.missing, modality: reason})  # fmt: skip


def _inside(path: Path, base: Path) -> bool:
    return path.resolve().is_relative_to(base)


def locate_files(folder: Path, part: str, modalities: tuple[str, ...] | None = None, within: Path | None = None,
                 ) -> tuple[dict[str, tuple[Path, ...]], dict[str, str]]:  # fmt: skip
    """Find each modality's file(s) in a weld folder; files resolving outside `within` are refused."""
    base = (within or folder).resolve()
    files: dict[str, tuple[Path, ...]] = {}
    missing: dict[str, str] = {}
    for modality in modalities or MODALITIES.names():
        spec = MODALITIES.get(modality)
        found = spec.locate(folder, part)
        outside = [p for p in found if not _inside(p, base)]
        if outside:
            missing[modality] = f"{outside[0].name} links outside {base}; not opened"
        elif not found:
            missing[modality] = f"missing file {spec.expected(part)}"
        else:
            empty = [p for p in found if p.stat().st_size == 0]
            if empty and len(empty) == len(found):  # one empty photo only masks its own view (reader)
                missing[modality] = f"{empty[0].name} is empty (0 bytes)"
        if found:
            files[modality] = found
    return files, missing


def resolve_folder(root: Path, key: str) -> tuple[Path | None, str | None]:
    """The sample folder for a SUBDIRS value, or (None, reason) when it would escape the root."""
    if "\x00" in key:
        return None, "SUBDIRS contains a NUL byte; rejected, not opened"
    pure = PurePosixPath(key.replace("\\", "/"))
    if any(len(part.encode()) > 255 for part in pure.parts):
        return None, "SUBDIRS has a name longer than 255 bytes; rejected, not opened"
    if pure.is_absolute() or Path(key).is_absolute():
        return None, "SUBDIRS is an absolute path; rejected, not opened"
    if ".." in pure.parts:
        return None, "SUBDIRS contains '..'; rejected, not opened"
    folder = root / pure
    if not _inside(folder, root.resolve()):
        return None, "SUBDIRS resolves outside the dataset root (link); rejected, not opened"
    return folder, None


def build_samples(root: Path, manifest: Manifest, modalities: tuple[str, ...] | None = None,
                  ) -> tuple[list[Sample], list[Problem]]:  # fmt: skip
    """Samples of every usable manifest row, plus the problems found (rejected rows, missing files)."""
    root = Path(root)
    problems: list[Problem] = []
    samples: list[Sample] = []
    for row in manifest.table.itertuples(index=False):
        folder, reason = resolve_folder(root, row.key)
        if folder is None:
            problems.append(Problem(row.key, None, f"row {row.line}: {reason}"))
            continue
        try:
            exists = folder.is_dir()
        except OSError as exc:  # e.g. a path longer than the system allows
            problems.append(Problem(row.key, None, f"row {row.line}: folder cannot be opened ({exc.strerror})"))
            continue
        if not exists:
            problems.append(Problem(row.key, None, f"row {row.line}: folder {folder} not found"))
            files, missing = {}, {m: "sample folder not found" for m in modalities or MODALITIES.names()}
        else:
            files, missing = locate_files(folder, PurePosixPath(row.key).name, modalities, within=root.resolve())
            problems.extend(Problem(row.key, m, why) for m, why in missing.items())
        samples.append(Sample(row.key, row.session, int(row.label), row.split, folder, files, missing))
    return samples, problems


def folder_sample(folder: Path, modalities: list[str] | tuple[str, ...], none_usable: str = "no usable modality") -> Sample:
    """A weld folder outside any manifest (`predict`, `monitor`) as a sample; InputError (one line,
    `none_usable` and the reasons) when none of `modalities` can be used at all."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory")
    files, missing = locate_files(folder, folder.name, tuple(modalities), within=folder.resolve())
    if not any(m in files and m not in missing for m in modalities):
        raise InputError(f"{folder}: {none_usable} (" + "; ".join(f"{m}: {why}" for m, why in missing.items()) + ")")
    return Sample(key=str(folder), session="", label=GOOD, split=None, folder=folder, files=files, missing=missing)
