import os

from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import build_samples, locate_files, resolve_folder


def write_manifest(root, rows):
    (root / "manifest.csv").write_text("CATEGORY,SUBDIRS,SPLIT\n" + "".join(f"Good,{r},TRAIN\n" for r in rows))
    return read_manifest(root / "manifest.csv")


def test_paths_escaping_the_root_are_rejected_not_opened(tmp_path):
    root = tmp_path / "root"
    (root / "s").mkdir(parents=True)
    outside = tmp_path / "outside" / "p1"
    outside.mkdir(parents=True)
    (outside / "p1.csv").write_text("secret")
    os.symlink(outside, root / "s" / "link")
    m = write_manifest(root, ["../outside/p1", str(outside), "s/link"])
    samples, problems = build_samples(root, m)
    assert samples == []
    text = [p.problem for p in problems]
    assert any("'..'" in t for t in text) and any("absolute" in t for t in text) and any("outside the dataset root" in t for t in text)


def test_files_linking_out_are_refused(tmp_path):
    root = tmp_path / "root"
    folder = root / "s" / "p1"
    folder.mkdir(parents=True)
    (tmp_path / "secret.csv").write_text("x")
    os.symlink(tmp_path / "secret.csv", folder / "p1.csv")
    files, missing = locate_files(folder, "p1", within=root.resolve())
    assert "links outside" in missing["sensor"]
    assert "missing file p1.avi" in missing["video"]


def test_folder_resolution_inside_root(tmp_path):
    assert resolve_folder(tmp_path, "a/b")[0] == tmp_path / "a" / "b"
    assert resolve_folder(tmp_path, "a/../../x")[0] is None


def test_sample_table_of_synthetic_data(synth_root):
    m = read_manifest(synth_root / "manifest.csv")
    samples, problems = build_samples(synth_root, m)
    assert problems == [] and len(samples) == len(m.table)
    s = samples[0]
    assert all(s.available(mod) for mod in ("video", "images", "audio", "sensor"))
    assert len(s.files["images"]) == 5 and list(s.files["images"]) == sorted(s.files["images"])
    assert s.files["video"][0].name == f"{s.part}.avi"


def test_missing_and_empty_files_are_reported(corrupt_root):
    root, keys = corrupt_root["root"], corrupt_root["keys"]
    samples, problems = build_samples(root, read_manifest(root / "manifest.csv", require_split=False))
    by_key = {s.key: s for s in samples}
    assert by_key[keys["missing_flac"]].missing == {"audio": by_key[keys["missing_flac"]].missing["audio"]}
    assert "missing file" in by_key[keys["missing_flac"]].missing["audio"]
    assert "images/*.jpg" in by_key[keys["no_images"]].missing["images"]
    assert len(by_key[keys["three_images"]].files["images"]) == 3
    assert set(by_key[keys["all_missing"]].missing) == {"video", "images", "audio", "sensor"}
    assert keys["escape"] not in by_key
    assert any(p.sample == keys["escape"] and "'..'" in p.problem for p in problems)
