import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import BUILTIN as MODALITIES
from weldfusion.config import load_config
from weldfusion.data.dataset import WeldDataset
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import build_samples
from weldfusion.errors import InputError
from weldfusion.models.encoders import pool_grid
from weldfusion.models.info import parameter_counts
from weldfusion.models.model import WeldFusionModel
from weldfusion.features import build_transforms
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def batch(synth_root, tiny_checkpoints):
    config = tiny_config(tiny_checkpoints)
    samples, _ = build_samples(synth_root, read_manifest(synth_root / "manifest.csv"))
    loader = DataLoader(WeldDataset(samples[:4], list(MODALITIES), config.data, build_transforms(config)), batch_size=4)
    return next(iter(loader))


def test_preprocessing_comes_from_the_checkpoints(tiny_checkpoints):
    transforms = build_transforms(tiny_config(tiny_checkpoints))
    assert (transforms["video"].short_edge, transforms["video"].crop, transforms["video"].mean) == (36, 32, (0.5, 0.5, 0.5))
    assert (transforms["images"].resize.short_edge, transforms["images"].resize.crop) == (40, 32)
    extractor = transforms["audio"].extractor
    assert (extractor.num_mel_bins, extractor.max_length, extractor.mean, extractor.std) == (32, 64, -5.0, 4.0)
    explicit = build_transforms(tiny_config(tiny_checkpoints, **{"data.video.size": 48}))
    assert (explicit["video"].short_edge, explicit["video"].crop) == (54, 48)  # crop * 256 / 224


def test_encoders_load_through_from_pretrained_and_give_tokens(tiny_checkpoints, batch):
    model = WeldFusionModel(tiny_config(tiny_checkpoints)).eval()
    tokens, valid = model.encode(batch)
    assert tokens["video"].shape == (4, 2 * 4 * 4, 32)  # frames/tubelet x (32/8)^2 patches
    assert tokens["images"].shape == (4, 5 * 16, 32)  # per view (32/8)^2 patches, CLS dropped
    audio = model.encoders["audio"]
    assert tokens["audio"].shape[:2] == (4, 2 * audio.grid[0] * audio.grid[1]) and audio.grid[2] == 1  # clips x time x freq
    assert tokens["audio"].shape[2] == 32
    assert tokens["sensor"].shape == (4, 16, 16)
    assert all(v.all() for v in valid.values())
    out = model(batch, return_attention=True)
    assert out.embedding.shape == (4, 32)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(4))
    assert out.attention["video"].shape == (4, 4, 4, 32)  # (B, heads, fusion tokens, N)
    assert model.encoders["video"].backbone.predictor is None  # V-JEPA 2: encoder only


def test_missing_modality_contributes_nothing(tiny_checkpoints, batch):
    model = WeldFusionModel(tiny_config(tiny_checkpoints)).eval()
    masked = {**batch, "inputs": dict(batch["inputs"]), "mask": dict(batch["mask"])}
    masked["mask"]["audio"] = torch.zeros_like(batch["mask"]["audio"])
    reference = model(masked, return_attention=True)
    garbage = {**masked, "inputs": dict(masked["inputs"])}
    garbage["inputs"]["audio"] = torch.full_like(batch["inputs"]["audio"], float("nan"))
    out = model(garbage, return_attention=True)
    assert torch.isfinite(out.embedding).all()
    torch.testing.assert_close(out.embedding, reference.embedding)
    assert float(out.attention["audio"].detach().abs().sum()) == 0.0


def test_padded_view_is_ignored(tiny_checkpoints, batch):
    model = WeldFusionModel(tiny_config(tiny_checkpoints)).eval()
    two_views = {**batch, "inputs": dict(batch["inputs"]), "mask": dict(batch["mask"])}
    two_views["mask"]["images"] = torch.tensor([[True, True, False, False, False]] * 4)
    reference = model(two_views).embedding
    changed = {**two_views, "inputs": dict(two_views["inputs"])}
    images = batch["inputs"]["images"].clone()
    images[:, 2:] = torch.randn_like(images[:, 2:]) * 100
    changed["inputs"]["images"] = images
    torch.testing.assert_close(model(changed).embedding, reference)


def test_views_keep_their_tokens_apart(tiny_checkpoints, batch):
    model = WeldFusionModel(tiny_config(tiny_checkpoints)).eval()
    mask = batch["mask"]["images"].clone()
    mask[0, 3:] = False
    encoder = model.encoders["images"]
    tokens, valid = encoder(batch["inputs"]["images"], mask)
    per_view = encoder.grid[0] * encoder.grid[1] * encoder.grid[2]
    assert encoder.grid[0] == 1 and per_view == 16  # a 32 x 32 photo in 8 x 8 patches, the CLS token dropped
    assert tokens.shape == (4, 5 * per_view, 32)
    assert valid[0].tolist() == [True] * 3 * per_view + [False] * 2 * per_view
    assert float(tokens[0, 3 * per_view :].abs().sum()) == 0.0


def test_simple_fusion_and_modality_subset(tiny_checkpoints, batch):
    config = tiny_config(tiny_checkpoints, **{"model.fusion.kind": "simple", "model.modalities": "[video, sensor]"})
    model = WeldFusionModel(config).eval()
    assert set(model.encoders) == {"video", "sensor"}
    assert model(batch).embedding.shape == (4, 32)
    masked = {**batch, "mask": {**batch["mask"], "video": torch.zeros(4, 1, dtype=torch.bool)}}
    garbage = {**masked, "inputs": {**batch["inputs"], "video": torch.randn_like(batch["inputs"]["video"])}}
    torch.testing.assert_close(model(masked).embedding, model(garbage).embedding)


def test_freeze_unfreeze_changes_trainable_counts(tiny_checkpoints):
    model = WeldFusionModel(tiny_config(tiny_checkpoints))
    frozen = model.parameter_report()
    assert frozen["encoders.video"][1] == 0 and frozen["encoders.sensor"][1] == frozen["encoders.sensor"][0]
    model.unfreeze(last_k_blocks=1)
    partial = model.parameter_report()
    assert 0 < partial["encoders.video"][1] < partial["encoders.video"][0]
    model.unfreeze()
    assert model.parameter_report()["encoders.images"][1] == frozen["encoders.images"][0]
    model.freeze()
    assert model.parameter_report()["total"] == frozen["total"]
    config = tiny_config(tiny_checkpoints, **{"model.audio.freeze": False})
    assert WeldFusionModel(config).parameter_report()["encoders.audio"][1] > 0


def test_frozen_encoders_stay_in_eval_mode(tiny_checkpoints):
    model = WeldFusionModel(tiny_config(tiny_checkpoints)).train()
    assert not model.encoders["video"].training and model.encoders["sensor"].training and model.fusion.training


def test_classifier_head(tiny_checkpoints, batch):
    model = WeldFusionModel(tiny_config(tiny_checkpoints, **{"model.classifier": True})).eval()
    assert model(batch).logits.shape == (4, 12)


def test_grid_pooling_averages_neighbours_within_each_axis():
    tokens = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6, 1)
    pooled = pool_grid(tokens, [1, 2, 3])
    assert pooled.shape == (1, 1, 2, 3, 1)
    expected = tokens.reshape(2, 2, 2, 3, 2).mean(dim=(0, 2, 4))  # (t) x (h pairs) x (w pairs)
    torch.testing.assert_close(pooled[0, 0, :, :, 0], expected)
    assert pool_grid(tokens, None) is tokens and pool_grid(tokens, [9, 9, 9]) is tokens  # never enlarged


def test_full_preset_parameter_counts_without_weights():
    counts = parameter_counts(load_config("full"))
    assert counts["encoders.video"] == (303_885_312, 0)  # V-JEPA 2 ViT-L encoder, predictor skipped
    assert counts["encoders.images"] == (86_580_480, 0)  # DINOv2 ViT-B/14
    assert counts["encoders.audio"] == (85_761_024, 0)  # AST, 14/14 strides
    assert counts["encoders.sensor"][0] == counts["encoders.sensor"][1] > 0
    assert 10e6 < counts["total"][1] < 30e6  # SPEC: ~10-30M trainable


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    config = load_config("cpu", [f"model.video.pretrained={tmp_path}"])
    with pytest.raises(InputError, match="model.video.pretrained: VJEPA2Model"):
        WeldFusionModel(config)


def test_cpu_preset_model_is_deterministic():
    a, b = WeldFusionModel(load_config("cpu")), WeldFusionModel(load_config("cpu"))
    for (name, p), (_, q) in zip(a.encoders["video"].named_parameters(), b.encoders["video"].named_parameters()):
        assert torch.equal(p, q), name
    assert np.isclose(sum(p.sum().item() for p in a.encoders["images"].parameters()),
                      sum(p.sum().item() for p in b.encoders["images"].parameters()))  # fmt: skip


def test_full_preset_input_shapes_are_the_spec_shapes():
    from weldfusion.data.dataset import input_shapes

    config = load_config("full")
    assert input_shapes(config.data, build_transforms(config)) == {
        "video": (32, 3, 224, 352), "images": (5, 3, 224, 504), "audio": (3, 1024, 128), "sensor": (256, 6),
    }  # fmt: skip
