"""Write a synthetic dataset in the real on-disk format of the Intel welding dataset.

`<out>/manifest.csv` with the real columns; `<out>/<session>/<part>/<part>.avi` (MPEG-4 Part 2,
FourCC FMP4, 30/31 fps, grayscale), `<part>.flac` (16 kHz mono 16-bit), `<part>.csv` (the verbatim
header, ~8.6 Hz rows with arc-off margins) and `images/*.jpg` (5 views). Deterministic given the seed.

Two difficulties: `easy` (`render`: every weld of a class shows its class signature all the time, in
several modalities) and `realistic` (`events`, `recordings`, `photos`: local defect events with
ground truth in `<out>/ground_truth.json`, session nuisance drawn alike for every class, and the
class code printed on a paper tag in every photo).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

from weldfusion.data.categories import CATEGORIES, GOOD
from weldfusion.data.manifest import COLUMNS
from weldfusion.data.split import make_split, session_groups
from weldfusion.io import write_atomic, write_json_atomic
from weldfusion.metrics.localisation import SYNTHETIC_MARK
from weldfusion.registry import MODALITIES
from weldfusion.synth import photos, recordings, render
from weldfusion.synth.events import draw_layout
from weldfusion.synth.nuisance import Session, draw_session
from weldfusion.synth.truth import FILENAME, weld_truth, write_ground_truth

SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "small": {"video": (160, 100), "photo": (240, 108)},
    "real": {"video": (960, 600), "photo": (2000, 900)},  # the real files' resolutions
}
SENSOR_HEADER = "Date,Time,Part No,Pressure,CO2 Weld Flow,Feed,Primary Weld Current,Wire Consumed,Secondary Weld Voltage,Remarks"
SLUGS = {
    0: "good_weld", 1: "excessive_penetration", 2: "burnthrough_weld", 3: "porosity", 4: "porosity_w_excessive_penetration",
    5: "undercut", 6: "overlap", 7: "lack_of_fusion", 8: "excessive_convexity", 9: "spatter", 10: "warping",
    11: "crater_cracks",
}  # fmt: skip
AUDIO_RATE = 16000
VIEWS = 5
DIFFICULTIES = ("easy", "realistic")
SPLIT_KINDS = ("supervised", "official", "anomaly")


@dataclass(frozen=True)
class Weld:
    """Everything needed to write one weld: where, what, and the seeds of its randomness."""

    session: str
    part: str
    label: int
    recipe: render.Recipe
    date: datetime
    seed: tuple[int, ...]
    seconds: float
    size: str
    difficulty: str = "easy"
    nuisance: Session | None = None  # realistic: the session's nuisance (its recipe is `recipe`)

    @property
    def key(self) -> str:
        return f"{self.session}/{self.part}"


def plan(per_class: int, seconds: float, size: str, seed: int, session_size: int = 4, difficulty: str = "easy") -> list[Weld]:
    """Sessions of each class (Good gets twice as many welds, as in the real data), with recipe twins.

    A class gets at least 5 sessions when it has the welds for them, so that a session-disjoint
    60/20/20 split leaves several sessions for training. `realistic` sessions draw their nuisance
    (recipe included) from one distribution for every class.
    """
    rng = np.random.default_rng([seed, 0])
    welds: list[Weld] = []
    serial = 0
    for label in range(len(CATEGORIES)):
        count = per_class * (2 if label == GOOD else 1)
        sessions = min(count, max(5, math.ceil(count / session_size)))
        names, recipes, dates, nuisances = [], [], [], []
        for s in range(sessions):
            date = datetime(2022, 9, 1) + timedelta(days=int(rng.integers(0, 200)))
            steel = str(rng.choice(["Fe410", "BSK46"]))
            if s == sessions - 1 and sessions >= 4:  # a "top-up" twin of the first session
                names.append(f"2_{names[0]}")
                recipes.append(recipes[0])
                nuisances.append(nuisances[0])
            else:
                names.append(f"{SLUGS[label]}_{s + 1}_{date:%m-%d-%y}_{steel}")
                recipes.append(render.session_recipe(rng, render.SIGNATURES[label][3]))
                nuisances.append(draw_session(np.random.default_rng([seed, 2, label, s])) if difficulty == "realistic" else None)
            dates.append(date)
        for i in range(count):
            s = i % sessions
            serial += 1
            part = f"{dates[s]:%m-%d-%y}-{serial:04d}-{label:02d}"
            recipe = nuisances[s].recipe if nuisances[s] else recipes[s]
            welds.append(Weld(names[s], part, label, recipe, dates[s], (seed, serial), seconds, size, difficulty, nuisances[s]))
    return welds


def manifest_rows(welds: list[Weld], split: str, seed: int) -> pd.DataFrame:
    sessions = pd.Series([w.session for w in welds]).value_counts()
    rows = pd.DataFrame([
        {"CATEGORY": CATEGORIES[w.label], "WELD_TYPE": "FILLET" if "Fe410" in w.session else "NON_FILLET",
         "THICKNESS_MM": 3 if w.label in (1, 2) else 7, "STEEL_TYPE": w.session.rsplit("_", 1)[-1].upper(),
         "SAMPLES": int(sessions[w.session]), "CURRENT_A": 5 * round(w.recipe.current / 5),
         "VOLTAGE_V": round(w.recipe.voltage * 2) / 2,
         "GAS_BAR": w.recipe.gas_bar, "ROBOT_SPEED_CPM": w.recipe.speed, "DIRECTORY": w.session,
         "SUBDIRS": w.key, "SPLIT": ""}
        for w in welds
    ], columns=list(COLUMNS))  # fmt: skip
    rows["SPLIT"] = assign_splits(welds, split, seed)
    return rows


def assign_splits(welds: list[Weld], split: str, seed: int) -> list[str]:
    """`official`: TRAIN is Good only and sessions cross TRAIN/VAL/TEST (like the real split: a Good
    VAL/TEST weld has session mates in TRAIN, a defect never does, so session nuisance alone flags
    defects); `anomaly`: the same shape without that leak (no session crosses splits);
    `supervised`: weldfusion's own session-disjoint split with every class in every split."""
    if split == "official":
        rng = np.random.default_rng([seed, 1])
        out = []
        for w in welds:
            if w.label == GOOD:
                out.append(str(rng.choice(["TRAIN", "VAL", "TEST"], p=[0.6, 0.2, 0.2])))
            else:
                out.append(str(rng.choice(["VAL", "TEST"])))
        return out
    if split not in SPLIT_KINDS:
        raise ValueError(f"unknown split kind {split!r}: use {', '.join(SPLIT_KINDS)}")
    table = pd.DataFrame({"key": [w.key for w in welds], "session": [w.session for w in welds],
                          "label": [w.label for w in welds]})  # fmt: skip
    splits = make_split(table, val=0.2, test=0.2, seed=seed).splits.to_numpy()
    if split == "anomaly":  # defect sessions drawn for TRAIN go to VAL or TEST, whole
        groups = session_groups(table).to_numpy()
        rng = np.random.default_rng([seed, 3])
        moved = {g: str(rng.choice(["val", "test"])) for g in sorted(set(groups[(table["label"] != GOOD) & (splits == "train")]))}
        splits = np.array([moved.get(g, s) for g, s in zip(groups, splits)])
    return [s.upper() for s in splits]


@dataclass
class Recordings:
    """One weld's four recordings, ready to write."""

    fps: int
    frames: Iterable[np.ndarray]  # grayscale uint8 (H, W)
    wave: np.ndarray  # float32 mono at AUDIO_RATE
    sensor: np.ndarray  # (rows, 6)
    photos: list[Image.Image]


def easy_recordings(weld: Weld, rng: dict[str, np.random.Generator]) -> Recordings:
    video_state, photo_state, audio_state, sensor_state = render.SIGNATURES[weld.label]
    sizes = SIZES[weld.size]
    # each recording starts and stops on its own clock (real modalities are not synchronised)
    video_t, audio_t, sensor_t = (render.timing(rng["time"], weld.seconds) for _ in range(3))
    return Recordings(
        weld.recipe.fps, render.video_frames(rng["video"], video_state, weld.recipe, video_t, sizes["video"]),
        render.audio_wave(rng["audio"], audio_state, weld.recipe, audio_t, AUDIO_RATE),
        render.sensor_rows(rng["sensor"], sensor_state, weld.recipe, sensor_t),
        [render.photo(rng["photo"], photo_state, weld.recipe, sizes["photo"], view, weld.part) for view in range(VIEWS)],
    )  # fmt: skip


def realistic_recordings(weld: Weld, rng: dict[str, np.random.Generator]) -> Recordings:
    session, sizes = weld.nuisance, SIZES[weld.size]
    layout = draw_layout(session, weld.label, weld.seconds, weld.seed)
    return Recordings(
        session.recipe.fps, recordings.video_frames(rng["video"], session, layout, sizes["video"]),
        recordings.audio_wave(rng["audio"], session, layout, AUDIO_RATE), recordings.sensor_rows(rng["sensor"], session, layout),
        [photos.photo(rng["photo"], session, layout, view, sizes["photo"], weld.label) for view in range(VIEWS)],
    )  # fmt: skip


def write_weld(root: Path, weld: Weld) -> None:
    """Write the four recordings of one weld into `<root>/<session>/<part>/`."""
    folder = root / weld.session / weld.part
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = {m: np.random.default_rng([*weld.seed, i]) for i, m in enumerate(("time", "video", "photo", "audio", "sensor"))}
    made = (easy_recordings if weld.difficulty == "easy" else realistic_recordings)(weld, rng)

    def video(tmp: Path) -> None:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"FMP4"), made.fps, SIZES[weld.size]["video"], isColor=False)
        for frame in made.frames:
            writer.write(frame)
        writer.release()

    write_atomic(folder / f"{weld.part}.avi", video, suffix=".avi")
    write_atomic(folder / f"{weld.part}.flac", lambda tmp: sf.write(tmp, made.wave, AUDIO_RATE, subtype="PCM_16", format="FLAC"))
    write_atomic(folder / f"{weld.part}.csv", lambda tmp: tmp.write_text(sensor_csv(weld, rng["sensor"], made.sensor)))
    for view, image in enumerate(made.photos):
        write_atomic(folder / "images" / f"{weld.part}_{view + 1}.jpg", lambda tmp, image=image: image.save(tmp, format="JPEG", quality=90))
    for index, spec in enumerate(MODALITIES):  # modalities beyond the four built-in ones render themselves
        spec.render(folder, weld.part, weld.label, weld.seconds, np.random.default_rng([*weld.seed, 100 + index]))


def sensor_csv(weld: Weld, rng: np.random.Generator, rows: np.ndarray) -> str:
    start = weld.date + timedelta(hours=9 + int(rng.integers(0, 8)), minutes=int(rng.integers(0, 60)))
    lines = [SENSOR_HEADER]
    for i, values in enumerate(rows):
        stamp = start + timedelta(seconds=i / render.SENSOR_RATE)
        numbers = ",".join(f"{v:.2f}" for v in values)
        lines.append(f"{stamp:%m-%d-%y},{stamp:%H:%M:%S.%f}"[:-3] + f",{weld.part},{numbers},")
    return "\n".join(lines) + "\n"


def synthesize(out: Path, per_class: int = 8, seconds: float = 4.0, size: str = "small", split: str = "supervised",
               seed: int = 0, workers: int = 2, progress: Callable[[int, int], None] | None = None,
               difficulty: str = "easy") -> Path:  # fmt: skip
    """Write the whole dataset (and, when realistic, its ground truth); returns the manifest path.
    `progress(done, total)` is called per weld."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}: use small or real")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}: use easy or realistic")
    if per_class < 1 or seconds <= 0:
        raise ValueError("per_class must be >= 1 and seconds > 0")
    out = Path(out)
    welds = plan(per_class, seconds, size, seed, difficulty=difficulty)
    out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=workers) if workers > 1 else _Inline() as pool:
        for done, _ in enumerate(pool.map(write_weld, [out] * len(welds), welds), start=1):
            if progress:
                progress(done, len(welds))
    generator = {"difficulty": difficulty, "seed": seed, "per_class": per_class, "seconds": seconds, "size": size}
    write_json_atomic(out / SYNTHETIC_MARK, {"format": "weldfusion-synthetic", "generator": generator})
    if difficulty == "realistic":
        write_ground_truth(out, ground_truth(welds), generator)
    else:
        (out / FILENAME).unlink(missing_ok=True)  # the ground truth must describe the welds beside it
    return write_manifest(out, per_class, seconds, size, split, seed, difficulty=difficulty)


def ground_truth(welds: list[Weld]) -> dict[str, dict]:
    """SUBDIRS -> ground truth of each realistic weld (recomputed from its seeds, as the writer drew it)."""
    truth = {}
    for weld in welds:
        width, height = SIZES[weld.size]["photo"]
        truth[weld.key] = weld_truth(weld.label, draw_layout(weld.nuisance, weld.label, weld.seconds, weld.seed), height / width)
    return truth


def write_manifest(out: Path, per_class: int, seconds: float, size: str, split: str, seed: int,
                   name: str = "manifest.csv", difficulty: str = "easy") -> Path:  # fmt: skip
    """The manifest of a synthetic dataset (the plan is deterministic, so another split of the same
    welds can be written later, e.g. an official-style one beside a supervised one)."""
    rows = manifest_rows(plan(per_class, seconds, size, seed, difficulty=difficulty), split, seed)
    manifest = Path(out) / name
    write_atomic(manifest, lambda tmp: rows.to_csv(tmp, index=False))
    return manifest


class _Inline:
    """A one-process stand-in for ProcessPoolExecutor (map runs in the caller)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def map(fn: Callable, *iterables):  # type: ignore[no-untyped-def]
        return map(fn, *iterables)
