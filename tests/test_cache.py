import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from weldfusion.data.dataset import WeldDataset
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import build_samples
from weldfusion.errors import InputError
from weldfusion.models.cache import CachedDataset, fill_cache, frozen_modalities, open_stores
from weldfusion.models.model import WeldFusionModel
from weldfusion.features import build_transforms
from tests.conftest import copy_dataset, tiny_config

CACHED = ["video", "images", "audio"]


@pytest.fixture()
def setup(synth_root, tiny_checkpoints, tmp_path):
    root = copy_dataset(synth_root, tmp_path / "data")
    config = tiny_config(tiny_checkpoints, **{"cache.dir": str(tmp_path / "cache"), "data.num_workers": 0})
    samples, _ = build_samples(root, read_manifest(root / "manifest.csv"))
    return root, config, samples[:6]


def test_fill_then_hit_and_same_tokens_as_live(setup):
    root, config, samples = setup
    transforms = build_transforms(config)
    assert frozen_modalities(config) == CACHED
    caches = open_stores(config, transforms, modalities=CACHED)
    assert fill_cache(samples, config, transforms, caches) == {m: 6 for m in CACHED}
    assert fill_cache(samples, config, transforms, caches) == {m: 0 for m in CACHED}
    model = WeldFusionModel(config).eval()
    live = WeldDataset(samples, config.model.modalities, config.data, transforms)
    batch = next(iter(DataLoader(live, batch_size=6)))
    with torch.inference_mode():
        tokens, _ = model.encode(batch)
        cached = next(iter(DataLoader(CachedDataset(WeldDataset(samples, ["sensor"], config.data, transforms), caches), batch_size=6)))
        for m in CACHED:
            torch.testing.assert_close(cached["tokens"][m].float(), tokens[m], atol=2e-2, rtol=2e-3)  # fp16 storage
        headless = WeldFusionModel(config, cached=set(CACHED)).eval()
        headless.load_state_dict(model.state_dict(), strict=False)
        torch.testing.assert_close(headless(cached).embedding, model(batch).embedding, atol=1e-2, rtol=1e-2)
    assert set(headless.encoders) == {"sensor"}


def test_invalidation_is_exact(setup):
    root, config, samples = setup
    transforms = build_transforms(config)
    caches = open_stores(config, transforms, modalities=CACHED)
    fill_cache(samples, config, transforms, caches)
    video = samples[2].files["video"][0]
    shutil.copy(samples[3].files["video"][0], video)  # the file changes under the same name
    assert fill_cache(samples, config, transforms, caches) == {"video": 1, "images": 0, "audio": 0}
    pooled = tiny_config(config_checkpoints(config), **{"cache.dir": config.cache.dir, "model.video.pool_grid": "[1, 2, 4]"})
    caches = open_stores(pooled, build_transforms(pooled), CACHED)
    assert fill_cache(samples, pooled, build_transforms(pooled), caches) == {"video": 6, "images": 0, "audio": 0}
    entry = caches["video"].load(samples[0])
    assert entry.tokens.shape[0] == 8 and entry.grid == (1, 2, 4)


def config_checkpoints(config):
    return {m: getattr(config.model, m).pretrained for m in CACHED}


def test_interrupted_fill_resumes(setup):
    root, config, samples = setup
    config.cache.batch_size = 2
    transforms = build_transforms(config)
    caches = open_stores(config, transforms, modalities=["video"])

    def stop_after_first_batch(modality, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fill_cache(samples, config, transforms, caches, progress=stop_after_first_batch)
    assert sum(caches["video"].has(s) for s in samples) == 2
    assert fill_cache(samples, config, transforms, caches) == {"video": 4}


def test_unusable_modality_is_cached_masked_with_its_reason(setup):
    root, config, samples = setup
    samples[0].files["audio"][0].unlink()
    samples, _ = build_samples(root, read_manifest(root / "manifest.csv"))
    transforms = build_transforms(config)
    caches = open_stores(config, transforms, modalities=["audio"])
    fill_cache(samples[:2], config, transforms, caches)
    entry = caches["audio"].load(samples[0])
    assert not entry.valid.any() and "missing file" in entry.problem and entry.span.isnan().all()
    assert caches["audio"].load(samples[1]).valid.all()


def test_damaged_entry_is_a_clear_error(setup):
    root, config, samples = setup
    transforms = build_transforms(config)
    caches = open_stores(config, transforms, modalities=["images"])
    fill_cache(samples[:1], config, transforms, caches)
    path = caches["images"].path(samples[0])
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match="damaged cache entry"):
        caches["images"].load(samples[0])
