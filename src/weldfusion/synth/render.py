"""Render one synthetic weld's four recordings with physically motivated class signatures.

Each class is a combination of per-modality states (`SIGNATURES`), chosen so that for every
modality some pair of classes differs in that modality alone, and no single modality separates
all 12 classes: fusion is necessary. States:

- video  0 steady arc | 1 spatter sparks thrown from the arc | 2 overheating: long glow, hot spot
- photo  0 regular bead | 1 wide flat bead, heat tint | 2 pores (dark holes) | 3 narrow convex bead
- audio  0 steady hiss and short-circuit hum | 1 crackle (impulsive pops) | 2 arc outages (gaps)
- sensor 0 nominal | 1 high heat input (current, voltage, feed up) | 2 shielding gas low | 3 cold (down)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# class code -> (video, photo, audio, sensor) state
SIGNATURES: dict[int, tuple[int, int, int, int]] = {
    0: (0, 0, 0, 0),  # Good
    1: (0, 1, 0, 1),  # Excessive_Penetration
    2: (2, 1, 0, 1),  # Burnthrough: as 01 but the video shows the melt-through glow
    3: (0, 2, 1, 2),  # Porosity
    4: (0, 2, 1, 1),  # Porosity_w_Excessive_Penetration: as 03 but hot instead of gas-starved
    5: (0, 3, 0, 1),  # Undercut: as 01 but a narrow bead with grooved toes
    6: (0, 3, 2, 3),  # Overlap
    7: (0, 0, 2, 3),  # Lack_of_Fusion: as 06 but the bead looks regular
    8: (0, 3, 0, 3),  # Excessive_Convexity: as 06 but the arc sounds steady
    9: (1, 0, 1, 0),  # Spatter
    10: (2, 0, 0, 0),  # Warping: as Good but the plate overheats
    11: (0, 0, 1, 0),  # Crater_Cracks: as Good but crackles as the crater cools
}


@dataclass(frozen=True)
class Recipe:
    """Per-session settings (nuisance shared by a session's welds)."""

    current: float
    voltage: float
    gas_bar: float
    feed: float
    speed: int
    fps: int
    exposure: float
    seam: float  # seam height as a fraction of the frame
    tint: tuple[float, float, float]  # photo lighting colour
    hum: float  # short-circuit transfer frequency, Hz
    loudness: float


def session_recipe(rng: np.random.Generator, sensor_state: int) -> Recipe:
    current = rng.uniform(150, 180) + {1: 45.0, 3: -45.0}.get(sensor_state, 0.0)
    voltage = rng.uniform(19.5, 23.5) + {1: 3.0, 3: -3.5}.get(sensor_state, 0.0)
    gas = 0.4 if sensor_state == 2 else rng.uniform(3.5, 4.5)
    feed = rng.uniform(7.5, 8.5) + {1: 2.0, 3: -3.0}.get(sensor_state, 0.0)
    return Recipe(
        current=round(current), voltage=round(voltage, 1), gas_bar=round(gas, 1), feed=feed,
        speed=int(rng.choice([25, 30])), fps=int(rng.choice([30, 31])), exposure=rng.uniform(0.85, 1.15),
        seam=rng.uniform(0.45, 0.6), tint=tuple(rng.uniform(0.9, 1.1, 3)), hum=rng.uniform(90, 130),
        loudness=rng.uniform(0.8, 1.2),
    )  # fmt: skip


@dataclass(frozen=True)
class Timing:
    """Arc-on window of each recording (seconds); recordings are not synchronised."""

    pre: float
    arc: float
    post: float

    @property
    def total(self) -> float:
        return self.pre + self.arc + self.post


def timing(rng: np.random.Generator, seconds: float) -> Timing:
    return Timing(pre=rng.uniform(0.3, 1.0), arc=seconds * rng.uniform(0.8, 1.2), post=rng.uniform(0.3, 1.0))


def add_blob(frame: np.ndarray, cx: float, cy: float, sigma: float, amplitude: float) -> None:
    """Add a Gaussian spot in place, computed only within 4 sigma of its centre."""
    height, width = frame.shape
    x0, x1 = max(int(cx - 4 * sigma), 0), min(int(cx + 4 * sigma) + 1, width)
    y0, y1 = max(int(cy - 4 * sigma), 0), min(int(cy + 4 * sigma) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.exp(-((np.arange(x0, x1, dtype=np.float32) - cx) ** 2) / (2 * sigma**2))
    ys = np.exp(-((np.arange(y0, y1, dtype=np.float32) - cy) ** 2) / (2 * sigma**2))
    frame[y0:y1, x0:x1] += amplitude * np.outer(ys, xs)


def video_frames(rng: np.random.Generator, state: int, recipe: Recipe, t: Timing, size: tuple[int, int]):
    """Yield grayscale uint8 frames (H, W) of a torch-mounted camera: the arc stays near the frame
    centre while the plate moves under it, the cooling bead glowing behind it (to the left)."""
    width, height = size
    n = max(int(t.total * recipe.fps), 2)
    seam = recipe.seam * height
    x_arc = 0.55 * width
    radius = 0.06 * width
    base = (18.0 + 6.0 * (np.arange(width, dtype=np.float32) / width))[None, :].repeat(height, axis=0)
    noise = [rng.normal(0, 3.0, (height, width)).astype(np.float32) for _ in range(4)]  # sensor noise bank
    xs = np.arange(width, dtype=np.float32)
    band = slice(max(int(seam - 0.1 * height), 0), min(int(seam + 0.1 * height) + 1, height))
    across = np.exp(-((np.arange(height, dtype=np.float32)[band] - seam) ** 2) / (2 * (0.03 * height) ** 2))
    glow_len = 0.12 * width * (3.0 if state == 2 else 1.0)
    trail = np.where(xs <= x_arc, np.exp(-(x_arc - xs) / glow_len), 0.0).astype(np.float32)
    hot_time = rng.uniform(0.3, 0.6)  # melt-through starts at this fraction of the weld
    speed = 0.5 * width / max(t.arc, 1e-6)  # plate motion in pixels per second
    for i in range(n):
        now = i / recipe.fps
        frame = base + noise[i % len(noise)]
        arc_on = t.pre <= now <= t.pre + t.arc
        progress = float(np.clip((now - t.pre) / t.arc, 0.0, 1.0))
        if progress > 0:
            frame[band] += 120.0 * np.outer(across, trail * min(progress * 10, 1.0))
        if arc_on:
            flicker = rng.uniform(0.85, 1.15) * (1.3 if state == 2 else 1.0)
            add_blob(frame, x_arc, seam, radius, 255.0 * flicker)
            if state == 1:  # spatter: many sparks thrown up and around the arc
                for _ in range(rng.poisson(30)):
                    angle, dist = rng.uniform(np.pi * 0.9, np.pi * 2.1), rng.uniform(1.2, 5.0) * radius
                    add_blob(frame, x_arc + dist * np.cos(angle), seam + 0.8 * dist * np.sin(angle), 0.012 * width, 255.0)
        if state == 2 and progress >= hot_time:  # melt-through: a growing glowing hole carried away by the plate
            age = (progress - hot_time) * t.arc
            add_blob(frame, x_arc - speed * age, seam, (0.04 + 0.06 * min(age / 2.0, 1.0)) * width, 220.0)
        yield np.clip(frame * recipe.exposure, 0, 255).astype(np.uint8)


def audio_wave(rng: np.random.Generator, state: int, recipe: Recipe, t: Timing, rate: int) -> np.ndarray:
    """Mono float32 in [-1, 1]: arc hiss + short-circuit hum while the arc burns; pops or outages by state."""
    n = int(t.total * rate)
    time = np.arange(n) / rate
    on = (time >= t.pre) & (time <= t.pre + t.arc)
    hiss = np.convolve(rng.normal(0, 1, n), np.ones(3) / 3, mode="same")  # soft low-pass
    hum_freq = recipe.hum * (0.7 if state == 2 else 1.0)
    phase = 2 * np.pi * np.cumsum(hum_freq * (1 + 0.02 * rng.normal(0, 1, n))) / rate
    hum = sum(np.sin(k * phase) / k for k in (1, 2, 3))
    arc = recipe.loudness * (0.10 * hiss + 0.06 * hum)
    if state == 2:  # arc outages: the sound drops for 80-250 ms, about twice a second
        gate = np.ones(n)
        for start in rng.uniform(t.pre, t.pre + t.arc, rng.poisson(2.0 * t.arc) + 1):
            gate[(time >= start) & (time < start + rng.uniform(0.08, 0.25))] = 0.08
        arc *= gate
    if state == 1:  # crackle: sharp decaying broadband pops
        pop = np.exp(-np.arange(int(0.008 * rate)) / (0.0015 * rate))
        for start in rng.uniform(t.pre, t.pre + t.arc, rng.poisson(60 * t.arc) + 1):
            i = int(start * rate)
            burst = rng.uniform(0.4, 0.9) * pop * rng.normal(0, 1, len(pop))
            arc[i : i + len(burst)] += burst[: max(0, n - i)]
    wave = np.where(on, arc, 0.0) + 0.004 * rng.normal(0, 1, n)
    return np.clip(wave, -1, 1).astype(np.float32)


SENSOR_RATE = 8.6  # rows per second, as in the real logs


def sensor_rows(rng: np.random.Generator, state: int, recipe: Recipe, t: Timing) -> np.ndarray:
    """(rows, 6) in the real channel order: Pressure, CO2 Weld Flow, Feed, Current, Wire Consumed, Voltage."""
    n = max(int(t.total * SENSOR_RATE), 4)
    time = np.sort(np.arange(n) / SENSOR_RATE + rng.uniform(-0.01, 0.01, n))
    on = (time >= t.pre) & (time <= t.pre + t.arc)
    pressure = recipe.gas_bar + rng.normal(0, 0.03, n)
    flow = np.where(on, recipe.gas_bar * 3.8 + rng.normal(0, 0.3, n), 0.0)
    feed = np.where(on, recipe.feed + rng.normal(0, 0.15, n), 0.0)
    current = np.where(on, recipe.current + rng.normal(0, 3.0, n), np.abs(rng.normal(0, 0.5, n)))
    voltage = np.where(on, recipe.voltage + rng.normal(0, 0.3, n), np.abs(rng.normal(0, 0.2, n)))
    wire = np.cumsum(feed) / SENSOR_RATE / 60.0  # metres
    return np.stack([pressure, flow, feed, current, wire, voltage], axis=1)


def photo(rng: np.random.Generator, state: int, recipe: Recipe, size: tuple[int, int], view: int,
          tag_text: str) -> Image.Image:  # fmt: skip
    """One RGB photo of the finished bead from one of five angles, with the paper tag in the corner."""
    width, height = size
    big_w, big_h = int(width * 1.3), int(height * 1.3)
    yy, xx = np.mgrid[0:big_h, 0:big_w].astype(np.float32)
    plate = 125.0 + 20.0 * (xx / big_w) + np.repeat(rng.normal(0, 6, (big_h, 1)), big_w, axis=1)
    centre = big_h * (0.5 + 0.04 * (view - 2))
    half = {1: 0.2, 3: 0.05}.get(state, 0.12) * big_h
    across = np.abs(yy - centre) / half
    ripples = 0.5 + 0.5 * np.cos(2 * np.pi * (xx / (0.025 * big_w) + 0.6 * across**2))
    shade = 1.0 - 0.4 * across**2
    bead_level = {1: 95.0, 3: 150.0}.get(state, 120.0) + 30.0 * ripples * shade
    if state == 3:  # convex crown: a bright specular line along the top, a shadow on the plate below
        bead_level += 110.0 * np.exp(-((yy - centre) ** 2) / (2 * (0.3 * half) ** 2))
        plate = plate - 60.0 * ((yy > centre + half) & (yy < centre + 3 * half))
    inside = across <= 1.0
    rgb = np.repeat(plate[..., None], 3, axis=2)
    rgb[inside] = bead_level[inside][:, None]
    if state == 1:  # heat tint: blue-violet oxide beside the flat bead
        band = (across > 1.0) & (across < 1.8)
        rgb[band] *= np.array([0.75, 0.8, 1.2])
    rgb *= np.array(recipe.tint) * rng.uniform(0.9, 1.1)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    if state == 2:  # pores: dark round holes along the bead
        for _ in range(rng.integers(15, 30)):
            r = rng.uniform(0.01, 0.025) * big_w
            cx, cy = rng.uniform(0.1, 0.9) * big_w, centre + rng.uniform(-0.6, 0.6) * half
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(25, 22, 20))
    left, top = rng.uniform(0, big_w - width), rng.uniform(0, big_h - height)
    image = image.crop((int(left), int(top), int(left) + width, int(top) + height))
    image = image.filter(ImageFilter.GaussianBlur(radius=max(width / 1000, 0.4)))
    # the paper tag with the part number (class code included), clipped to the tag like a real label
    box = (int(0.03 * width), int(0.76 * height), int(0.22 * width), int(0.96 * height))
    tag = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), (235, 235, 228))
    ImageDraw.Draw(tag).text((2, 1), tag_text, fill=(20, 20, 20))
    image.paste(tag, box[:2])
    return image
