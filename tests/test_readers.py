import cv2
import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from transformers import ASTFeatureExtractor, BitImageProcessorPil

from weldfusion.config import SensorData
from weldfusion.data.readers import evenly_spaced, read_audio, read_images, read_sensor, read_video
from weldfusion.data.transforms import FBANK_HOP, AudioTransform, ImageTransform, ResizeCrop
from weldfusion.errors import ModalityError
from weldfusion.synth.generate import SENSOR_HEADER

CHANNELS = ["Pressure", "CO2 Weld Flow", "Feed", "Primary Weld Current", "Wire Consumed", "Secondary Weld Voltage"]


def write_video(path, frames, fps=30, fourcc="FMP4", color=False):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h), isColor=color)
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def numbered_frames(n, h=48, w=64):
    """Frame i is a flat gray level 2*i + 20, so the decoded level identifies the frame."""
    return [np.full((h, w), 2 * i + 20, np.uint8) for i in range(n)]


def identity(frame):
    return frame


def test_even_sampling_covers_the_whole_clip(tmp_path):
    path = write_video(tmp_path / "v.avi", numbered_frames(100), fourcc="MJPG")
    decoded = read_video(path, 8, identity)
    levels = decoded.value[:, :, :, 0].mean(axis=(1, 2))
    expected = evenly_spaced(100, 8) * 2 + 20
    assert decoded.value.shape == (8, 48, 64, 3)
    np.testing.assert_allclose(levels, expected, atol=3)
    assert decoded.notes == []


def test_gray_video_is_three_equal_channels(tmp_path):
    path = write_video(tmp_path / "v.avi", numbered_frames(10))
    frames = read_video(path, 4, identity).value
    assert frames.shape[-1] == 3
    assert np.abs(frames[..., 0].astype(int) - frames[..., 2].astype(int)).max() <= 2


def test_fewer_frames_than_wanted_repeats_frames(tmp_path):
    path = write_video(tmp_path / "v.avi", numbered_frames(3), fourcc="MJPG")
    assert read_video(path, 8, identity).value.shape[0] == 8


def test_truncated_video_is_resampled_and_reported(tmp_path):
    path = write_video(tmp_path / "v.avi", numbered_frames(110), fourcc="MJPG")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    decoded = read_video(path, 8, identity)
    assert decoded.value.shape[0] == 8
    assert decoded.notes and "truncated" in decoded.notes[0]


@pytest.mark.parametrize("payload", [b"", b"RIFF\x00\x00\x00\x00AVI garbage" * 3, b"\x89PNG\r\n" + bytes(500)])
def test_unreadable_video_raises_naming_the_file(tmp_path, payload):
    path = tmp_path / "bad.avi"
    path.write_bytes(payload)
    with pytest.raises(ModalityError, match="bad.avi"):
        read_video(path, 4, identity)


def test_video_transform_follows_vjepa2_steps():
    t = ResizeCrop.for_crop(224)
    assert t.short_edge == 256
    frame = np.zeros((600, 960, 3), np.uint8)
    frame[:, 480:] = 255  # right half white
    out = t.frame(frame)
    assert out.shape == (224, 224, 3)
    # shortest edge 600 -> 256 makes the width 410; the centre crop keeps columns 93..316 of it,
    # so the white half starts at column 205 - 93 = 112 of the crop
    assert out[:, :110].max() < 10 and out[:, 114:].min() > 245
    x = t.normalise(np.stack([out, out]))
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], (0 - np.array(t.mean)) / np.array(t.std), rtol=1e-5)
    np.testing.assert_allclose(x[0, :, 0, -1], (1 - np.array(t.mean)) / np.array(t.std), rtol=1e-5)


def make_jpeg(path, size=(400, 180), color=(120, 130, 140)):
    Image.new("RGB", size, color).save(path, format="JPEG")
    return path


def test_images_padded_and_masked(tmp_path):
    paths = tuple(make_jpeg(tmp_path / f"{i}.jpg") for i in range(3))
    transform = ImageTransform(ResizeCrop.for_crop(56))
    decoded = read_images(paths, 5, transform, transform.resize.short_edge)
    assert decoded.value.shape == (5, 3, 56, 56)
    assert decoded.valid.tolist() == [True, True, True, False, False]


def test_corrupt_photo_is_masked_not_fatal(tmp_path):
    good = make_jpeg(tmp_path / "a.jpg")
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    transform = ImageTransform(ResizeCrop.for_crop(56))
    decoded = read_images((good, bad), 5, transform, transform.resize.short_edge)
    assert decoded.valid.tolist() == [True, False, False, False, False]
    assert "b.jpg: not a readable image" in decoded.notes[0]
    with pytest.raises(ModalityError, match="no readable photo"):
        read_images((bad,), 5, transform, transform.resize.short_edge)


def test_image_preprocessing_matches_dinov2_processor():
    """Same steps as facebook/dinov2-base's processor; only the resampling filter differs (area vs bicubic)."""
    processor = BitImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                     image_mean=list(ResizeCrop.for_crop(224).mean), image_std=list(ResizeCrop.for_crop(224).std),
                                     resample=Image.Resampling.BICUBIC)  # fmt: skip
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (45, 100, 3)).astype(np.uint8)
    image = Image.fromarray(base).resize((2000, 900), Image.Resampling.BILINEAR)  # smooth, photo-like content
    ours = ImageTransform(ResizeCrop.for_crop(224))(image)
    theirs = processor(images=image, return_tensors="np")["pixel_values"][0]
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert np.abs(ours - theirs).mean() < 0.02


def test_tag_box_is_blanked_to_the_mean():
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    masked = ImageTransform(ResizeCrop.for_crop(56), tag_box=[0.0, 0.0, 1.0, 1.0])(image)
    plain = ImageTransform(ResizeCrop.for_crop(56))(image)
    assert np.abs(masked).max() < 0.03  # mean colour normalises to ~0
    assert plain.min() > 1.0


def test_audio_mono_mix_resample_and_fbank(tmp_path):
    rate = 44100
    t = np.arange(rate * 3) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.3
    path = tmp_path / "a.flac"
    sf.write(path, stereo, rate, subtype="PCM_16")
    decoded = read_audio(path, 16000)
    assert decoded.value.shape[0] == pytest.approx(48000, abs=2)
    assert any("mixed to mono" in n for n in decoded.notes) and any("resampled" in n for n in decoded.notes)
    extractor = ASTFeatureExtractor(num_mel_bins=64, max_length=100)
    transform = AudioTransform(extractor, clips=3)
    assert transform.window == 99 * FBANK_HOP + 400
    features = transform(decoded.value)
    assert features.shape == (3, 100, 64)
    starts = np.linspace(0, len(decoded.value) - transform.window, 3).round().astype(int)
    reference = extractor([decoded.value[s : s + transform.window] for s in starts], sampling_rate=16000, return_tensors="np")
    np.testing.assert_allclose(features, reference["input_values"], atol=1e-5)  # AST's own extractor, same numbers
    # clips are spread evenly: the first starts at 0, the last ends at the end of the recording
    peak_bin = features[0].mean(axis=0).argmax()
    assert features[:, :, peak_bin].mean() > features.mean()


@pytest.mark.parametrize("payload,problem", [(b"", "empty file"), (b"fLaC" + bytes(64), "not a readable audio"),
                                             (b"ID3 not flac at all" * 10, "not a readable audio")])  # fmt: skip
def test_unreadable_audio(tmp_path, payload, problem):
    path = tmp_path / "x.flac"
    path.write_bytes(payload)
    with pytest.raises(ModalityError, match=problem):
        read_audio(path, 16000)


def sensor_file(tmp_path, rows, header=SENSOR_HEADER):
    path = tmp_path / "s.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def log_rows(n=40, current_on=(10, 30)):
    rows = []
    for i in range(n):
        current = 160.0 + i if current_on[0] <= i < current_on[1] else 0.2
        rows.append(f"02-09-23,10:00:{i:02d}.116,02-09-23-0001-00,4.0,15.0,8.0,{current},{i * 0.01:.2f},22.0,")
    return rows


def test_sensor_selects_channels_by_name_and_crops_the_arc(tmp_path):
    header = " " + SENSOR_HEADER.replace(",", " , ")  # whitespace around names is stripped
    decoded = read_sensor(sensor_file(tmp_path, log_rows(), header), SensorData(steps=16, crop_to_arc=True))
    assert decoded.value.shape == (16, 6) and decoded.value.dtype == np.float32
    current = decoded.value[:, 3]
    assert current.min() == pytest.approx(170.0) and current.max() == pytest.approx(189.0)
    uncropped = read_sensor(sensor_file(tmp_path, log_rows()), SensorData(steps=16, crop_to_arc=False))
    assert uncropped.value[0, 3] == pytest.approx(0.2)


def test_sensor_nan_cells_interpolated_and_reported(tmp_path):
    rows = log_rows()
    cells = rows[20].split(",")
    cells[6], cells[5], cells[1] = "", "n/a", "garbage-time"
    rows[20] = ",".join(cells)
    decoded = read_sensor(sensor_file(tmp_path, rows), SensorData(steps=20, crop_to_arc=True))
    assert np.isfinite(decoded.value).all()
    assert decoded.notes == ["2 empty or non-numeric cell(s) interpolated"]
    assert decoded.value[10, 3] == pytest.approx(180.0)  # midway between rows 19 and 21


def test_sensor_without_arc_is_used_whole_and_reported(tmp_path):
    decoded = read_sensor(sensor_file(tmp_path, log_rows(current_on=(0, 0))), SensorData(steps=8, crop_to_arc=True))
    assert "no arc-on rows" in decoded.notes[0]


@pytest.mark.parametrize(
    "header,rows,problem",
    [(SENSOR_HEADER.replace("Feed", "WireFeed"), log_rows(), "missing column.*Feed"),
     (SENSOR_HEADER, log_rows()[:1], "only 1 data row"),
     (SENSOR_HEADER, [r.replace(",22.0,", ",volts,") for r in log_rows()], "Secondary Weld Voltage hold no number")],
)  # fmt: skip
def test_sensor_errors_name_the_problem(tmp_path, header, rows, problem):
    with pytest.raises(ModalityError, match=problem):
        read_sensor(sensor_file(tmp_path, rows, header), SensorData(steps=8, crop_to_arc=True))
