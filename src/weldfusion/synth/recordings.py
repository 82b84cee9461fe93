"""The time-based recordings of the realistic generator: weld camera video, arc audio, sensor log.

Each recording runs on its own clock (`Clock.timing`), with the session's nuisance (exposure, camera
offset, normal sparks and pops, background noise, recipe drift) and the weld's defect events shaped
after their physics:

- pores: gas coverage lost: the CO2 flow dips, the arc sputters and flickers, pits freeze in the bead
- spatter: bright droplets thrown from the arc, crackle, short-circuit current spikes
- burnthrough: the pool falls through: a dark hole behind it, current drops, voltage rises, the arc roars
- heat (excessive penetration): a bigger pool and longer glow, current and voltage up
- undercut: a long arc (voltage up) melts a groove beside the bead
- overlap: too much wire (feed up): the pool spills over one edge
- cold (lack of fusion): current and voltage down, a dim pool, arc outages
- convexity: a short, cold arc all along (voltage down): small pool, lower short-circuit hum
- warping: the plate lifts as it heats: the seam drifts in the frame, the arc lengthens (voltage creeps up)
- crater: no crater fill at the end (the current stops dead) and cracks ticking as the crater cools
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from weldfusion.synth.events import FADE, KINDS, Event, Layout
from weldfusion.synth.nuisance import Session
from weldfusion.synth.render import SENSOR_RATE, add_blob

MARK_STEP = 0.04  # seconds between marks a trail-leaving event lays in the bead


def levels(layout: Layout, recording: str, t: np.ndarray) -> dict[str, np.ndarray]:
    """Severity-weighted envelope of every defect kind in `recording` at weld times `t` (one shared,
    read-only array of zeros for the kinds the weld lacks)."""
    zero = np.zeros(len(t))
    return {kind: layout.level(kind, recording, t) if layout.of(kind) else zero for kind in KINDS}


def lay_marks(rng: np.random.Generator, event: Event) -> np.ndarray:
    """(n, 3): time each mark is laid, its offset across the seam (-1..1), its strength (0..1)."""
    times = np.arange(event.start, event.end, MARK_STEP)
    strength = (rng.random(len(times)) < 0.5) * rng.uniform(0.5, 1.0, len(times)) if event.kind == "pores" else np.ones(len(times))
    return np.stack([times, rng.uniform(-1, 1, len(times)), strength], axis=1)


def video_frames(rng: np.random.Generator, session: Session, layout: Layout, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Grayscale uint8 frames (H, W) of a torch-mounted camera: the arc near the frame centre, the plate
    moving under it, the cooling bead glowing behind it (to the left)."""
    width, height = size
    recipe, timing = session.recipe, layout.clock.timing("video")
    n = max(int(timing.total * recipe.fps), 2)
    times = np.arange(n) / recipe.fps - timing.pre  # weld clock
    level = levels(layout, "video", times)
    warp = sum(e.side * e.severity * np.clip(times / layout.clock.arc, 0, 1) ** 2 for e in layout.of("warping"))
    seams = (recipe.seam + 0.15 * warp) * height + np.zeros(n)
    xs = np.arange(width, dtype=np.float32)
    base = session.background * (1.0 + 0.4 * xs / width)[None, :].repeat(height, axis=0)
    noise = [rng.normal(0, session.noise, (height, width)).astype(np.float32) for _ in range(4)]
    arc_x, radius = session.arc_x * width, 0.06 * width * session.pool
    speed = 0.12 * width * recipe.speed / 27.5  # plate travel, pixels per second
    trails = [(e, lay_marks(rng, e)) for e in layout.events if KINDS[e.kind].marks]
    for i, now in enumerate(times):
        lv = {kind: float(v[i]) for kind, v in level.items()}
        frame = base + noise[i % len(noise)]
        seam = seams[i]
        if now > 0:
            glow(frame, xs, now, layout.clock.arc, arc_x, seam, lv, height, width)
        for event, laid in trails:
            draw_marks(frame, event, laid, now, arc_x - 1.2 * radius, seam, speed, width, height)
        if 0 <= now <= layout.clock.arc:
            arc(frame, rng, session, lv, arc_x, seam, radius, width)
        yield np.clip(frame * recipe.exposure, 0, 255).astype(np.uint8)


def glow(frame: np.ndarray, xs: np.ndarray, now: float, arc_time: float, arc_x: float, seam: float, lv: dict[str, float],
         height: int, width: int) -> None:  # fmt: skip
    """The cooling bead behind the arc, in place: longer when hot, shorter when cold, fading after the arc stops."""
    length = 0.12 * width * (1 + lv["heat"]) * (1 - 0.5 * lv["cold"])
    fade = np.exp(-max(now - arc_time, 0.0) / 0.8) * min(now * 10, 1.0)
    trail = np.where(xs <= arc_x, np.exp(-(arc_x - xs) / length), 0.0)
    sigma = 0.03 * height * (1 + 0.4 * lv["heat"]) * (1 - 0.3 * lv["convexity"])
    rows = slice(max(int(seam - 4 * sigma), 0), min(int(seam + 4 * sigma) + 1, height))
    across = np.exp(-((np.arange(rows.start, rows.stop, dtype=np.float32) - seam) ** 2) / (2 * sigma**2))
    frame[rows] += 120.0 * fade * np.outer(across, trail)


def draw_marks(frame: np.ndarray, event: Event, laid: np.ndarray, now: float, behind: float, seam: float, speed: float,
               width: int, height: int) -> None:  # fmt: skip
    """Marks laid in the glowing bead (pits, the hole, a groove, a rolled edge), carried away by the plate
    and fading within FADE seconds as the bead cools."""
    age = now - laid[:, 0]
    shown = (age >= 0) & (age < FADE)
    s = event.severity
    for (_, offset, strength), a in zip(laid[shown], age[shown]):
        x = behind - speed * a
        contrast = s * strength * (1 - a / FADE)
        if event.kind == "pores":
            add_blob(frame, x, seam + offset * 0.03 * height, 0.012 * width, -110.0 * contrast)
        elif event.kind == "burnthrough":
            add_blob(frame, x, seam, 0.035 * width, -150.0 * contrast)
        elif event.kind == "undercut":
            add_blob(frame, x, seam + event.side * 0.05 * height, 0.008 * width, -90.0 * contrast)
        elif event.kind == "overlap":
            add_blob(frame, x, seam + event.side * 0.06 * height, 0.02 * width, 70.0 * contrast)


def arc(frame: np.ndarray, rng: np.random.Generator, session: Session, lv: dict[str, float], arc_x: float, seam: float,
        radius: float, width: int) -> None:  # fmt: skip
    """The arc and its pool, in place, with sparks: a few normal ones, a shower when spattering."""
    flicker = 1 + rng.normal(0, session.flicker + 0.25 * lv["pores"])
    brightness = 255.0 * flicker * (1 - 0.4 * lv["cold"]) * (1 - 0.35 * lv["burnthrough"]) * (1 + 0.2 * lv["convexity"])
    r = radius * (1 + 0.5 * lv["heat"]) * (1 - 0.3 * lv["convexity"])
    add_blob(frame, arc_x, seam, r, brightness)
    if lv["overlap"] > 0:  # the pool spills to one side
        add_blob(frame, arc_x - 0.5 * r, seam + 0.8 * r, 0.6 * r, 120.0 * lv["overlap"])
    for _ in range(rng.poisson(session.sparks / session.recipe.fps + 30 * lv["spatter"])):
        angle, dist = rng.uniform(np.pi * 0.9, np.pi * 2.1), rng.uniform(1.2, 5.0) * radius
        add_blob(frame, arc_x + dist * np.cos(angle), seam + 0.8 * dist * np.sin(angle), 0.012 * width, rng.uniform(150, 255))


def pops(wave: np.ndarray, rng: np.random.Generator, intensity: np.ndarray, rate: int, amplitude: tuple[float, float],
         decay: float) -> None:  # fmt: skip
    """Add decaying broadband pops in place, as a Poisson process of `intensity` pops per second."""
    count = rng.poisson(intensity.sum() / rate)
    if count == 0:
        return
    starts = rng.choice(len(wave), count, p=intensity / intensity.sum())
    length = int(6 * decay * rate)
    envelope = np.exp(-np.arange(length) / (decay * rate))
    for start in np.sort(starts):
        burst = rng.uniform(*amplitude) * envelope * rng.normal(0, 1, length)
        wave[start : start + length] += burst[: len(wave) - start]


def audio_wave(rng: np.random.Generator, session: Session, layout: Layout, rate: int) -> np.ndarray:
    """Mono float32 in [-1, 1]: arc hiss and short-circuit hum while the arc burns, pops and defect sounds,
    over the room's background noise and machine hum."""
    recipe, timing = session.recipe, layout.clock.timing("audio")
    n = int(timing.total * rate)
    time = np.arange(n) / rate
    now = time - timing.pre
    on = (now >= 0) & (now <= layout.clock.arc)
    lv = levels(layout, "audio", now)
    hiss = np.convolve(rng.normal(0, 1, n), np.ones(3) / 3, mode="same")
    frequency = recipe.hum * (1 - 0.15 * lv["convexity"]) * (1 - 0.2 * lv["burnthrough"])
    phase = 2 * np.pi * np.cumsum(frequency * (1 + 0.02 * rng.normal(0, 1, n))) / rate
    hum = sum(np.sin(k * phase) / k for k in (1, 2, 3))
    sound = 0.10 * hiss * (1 + lv["burnthrough"]) + 0.06 * hum * (1 + 0.8 * lv["convexity"]) * (1 - 0.5 * lv["burnthrough"])
    sound *= outages(rng, lv["cold"], now, rate) * np.clip(now / 0.1, 0, 1)
    wave = np.where(on, recipe.loudness * sound, 0.0)
    pops(wave, rng, on * session.pops + 60 * lv["spatter"], rate, (0.3, 0.8), 0.0015)
    pops(wave, rng, 25 * lv["pores"], rate, (0.2, 0.6), 0.004)
    pops(wave, rng, 15 * lv["crater"], rate, (0.2, 0.6), 0.0004)
    wave += session.room * rng.normal(0, 1, n) + session.mains * np.sin(2 * np.pi * 50 * time)
    return np.clip(wave, -1, 1).astype(np.float32)


def outages(rng: np.random.Generator, cold: np.ndarray, now: np.ndarray, rate: int) -> np.ndarray:
    """A gain that drops to 0.1 for 40-150 ms at about 4 outages per second of full severity."""
    gate = np.ones(len(now))
    for start in np.flatnonzero(rng.random(len(now)) < 4 * cold / rate):
        gate[start : start + int(rng.uniform(0.04, 0.15) * rate)] = 0.1
    return gate


def sensor_rows(rng: np.random.Generator, session: Session, layout: Layout) -> np.ndarray:
    """(rows, 6) in the real channel order: Pressure, CO2 Weld Flow, Feed, Current, Wire Consumed, Voltage."""
    recipe, timing, arc_time = session.recipe, layout.clock.timing("sensor"), layout.clock.arc
    n = max(int(timing.total * SENSOR_RATE), 4)
    now = np.sort(np.arange(n) / SENSOR_RATE + rng.uniform(-0.01, 0.01, n)) - timing.pre
    on = (now >= 0) & (now <= arc_time)
    progress = np.clip(now / arc_time, 0, 1)
    lv = levels(layout, "sensor", now)
    drift = 1 + rng.uniform(-0.04, 0.04, 3)[:, None] * (progress - 0.5)  # the recipe wanders within a weld
    noise = session.jitter
    fill = crater_fill(now, arc_time, max((e.severity for e in layout.of("crater")), default=0.0))
    current = recipe.current * drift[0] * fill * (1 + 0.1 * lv["heat"] - 0.2 * lv["burnthrough"] - 0.2 * lv["cold"] + 0.05 * lv["overlap"])
    voltage = recipe.voltage * drift[1] * (1 + 0.08 * lv["heat"] + 0.15 * lv["burnthrough"] - 0.08 * lv["cold"] + 0.1 * lv["undercut"]
                                           - 0.08 * lv["convexity"] + 0.1 * lv["warping"] * progress**2)  # fmt: skip
    feed = recipe.feed * drift[2] * (1 + 0.15 * lv["overlap"] - 0.1 * lv["cold"])
    flow = recipe.gas_bar * 3.8 * (1 - 0.7 * lv["pores"]) + np.cumsum(rng.normal(0, 0.15 * noise, n)) * 0.5
    spikes = (rng.random(n) < session.spikes / SENSOR_RATE) * rng.uniform(0.08, 0.2, n)
    spikes += (rng.random(n) < 0.5 * lv["spatter"]) * rng.uniform(0.15, 0.4, n)
    current = np.where(on, current * (1 + spikes) + rng.normal(0, 3.0 * noise, n), np.abs(rng.normal(0, 0.5, n)))
    voltage = np.where(on, voltage * (1 - 0.5 * spikes) + rng.normal(0, 0.3 * noise, n), np.abs(rng.normal(0, 0.2, n)))
    feed = np.where(on, feed + rng.normal(0, 0.15 * noise, n), 0.0)
    flow = np.where(on, flow + rng.normal(0, 0.3 * noise, n), 0.0)
    pressure = recipe.gas_bar + rng.normal(0, 0.03, n)
    wire = np.cumsum(feed) / SENSOR_RATE / 60.0  # metres
    return np.stack([pressure, flow, feed, current, wire, voltage], axis=1)


def crater_fill(now: np.ndarray, arc_time: float, abrupt: float) -> np.ndarray:
    """Current factor of the crater fill: down to 55 % over the last 0.3 s of the arc, unless the weld
    stops dead (`abrupt` = severity of a crater event: 1 = no fill at all)."""
    ramp = 1 - 0.45 * np.clip((now - (arc_time - 0.3)) / 0.3, 0, 1)
    return 1 - (1 - ramp) * (1 - abrupt)
