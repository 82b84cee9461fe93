import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses

from weldfusion.training.losses import CombinedLoss, SupConLoss


def brute_force(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """The per-anchor definition of Khosla et al., one anchor and one positive at a time."""
    z = F.normalize(embeddings.double(), dim=1)
    per_anchor = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / temperature) for a in others)
        terms = [math.log(math.exp(float(z[i] @ z[p]) / temperature) / denominator) for p in positives]
        per_anchor.append(-sum(terms) / len(positives))
    return torch.tensor(sum(per_anchor) / len(per_anchor), dtype=torch.float64)


CASES = [(16, 4, 0), (32, 12, 1), (9, 3, 2), (40, 2, 3)]


@pytest.mark.parametrize("batch,classes,seed", CASES)
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_matches_brute_force_loop(batch, classes, seed, temperature):
    g = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, 8, generator=g)
    labels = torch.randint(0, classes, (batch,), generator=g)
    loss, stats = SupConLoss(temperature)(embeddings, labels)
    assert not stats.degenerate
    torch.testing.assert_close(loss.double(), brute_force(embeddings, labels, temperature), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch,classes,seed", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_pytorch_metric_learning_values_and_gradients(batch, classes, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, 16, generator=g)
    labels = torch.randint(0, classes, (batch,), generator=g)
    ours_in = base.to(dtype).requires_grad_()
    ref_in = base.to(dtype).float().requires_grad_()  # the same rounded values, in float32
    ours, _ = SupConLoss(0.1)(ours_in, labels)
    reference = pml_losses.SupConLoss(temperature=0.1)(ref_in, labels)
    ours.backward()
    reference.backward()
    torch.testing.assert_close(ours.float(), reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours_in.grad.float(), ref_in.grad, rtol=2e-2, atol=2e-3 if dtype == torch.bfloat16 else 1e-5)


def test_gradient_pulls_positives_together():
    embeddings = torch.randn(8, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    optimiser = torch.optim.SGD([embeddings], lr=0.5)
    first = None
    for _ in range(50):
        loss, _ = SupConLoss(0.1)(embeddings, labels)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("labels", [[0] * 8, [0, 1, 2, 3]])
def test_single_class_or_no_positive_gives_zero_and_is_counted(labels):
    loss_fn = SupConLoss(0.07)
    embeddings = torch.randn(len(labels), 4, requires_grad=True)
    loss, stats = loss_fn(embeddings, torch.tensor(labels))
    loss.backward()
    assert loss.item() == 0.0 and stats.degenerate and loss_fn.degenerate_batches == 1
    assert torch.isfinite(embeddings.grad).all()


def test_the_prototype_constant_is_what_one_class_batches_would_give():
    # All 32 welds Good and embeddings collapsed: the plain SupCon formula is log(31) ~ 3.434,
    # the constant the prototype's loss sat at. We refuse to report it as a loss.
    z = torch.ones(32, 4)
    assert math.isclose(brute_force(z, torch.zeros(32), 0.07).item(), math.log(31), rel_tol=1e-9)
    assert SupConLoss(0.07)(z, torch.zeros(32, dtype=torch.long))[0].item() == 0.0


def test_pair_statistics():
    _, stats = SupConLoss()(torch.randn(6, 3), torch.tensor([0, 0, 0, 1, 1, 2]))
    assert (stats.anchors, stats.positive_pairs, stats.negative_pairs) == (5, 8, 22)


def test_stable_with_extreme_temperature():
    loss, _ = SupConLoss(1e-4)(torch.randn(16, 8), torch.arange(16) % 4)
    assert torch.isfinite(loss)


def test_combined_loss_adds_cross_entropy():
    embeddings, labels = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    logits = torch.randn(8, 12)
    supcon, _ = SupConLoss(0.1)(embeddings, labels)
    combined, _ = CombinedLoss(0.1, supcon_weight=0.5, ce_weight=2.0)(embeddings, labels, logits)
    torch.testing.assert_close(combined, 0.5 * supcon + 2.0 * F.cross_entropy(logits, labels))
