import numpy as np
import pytest

from weldfusion.data.sampler import ClassBalancedBatchSampler
from weldfusion.errors import InputError

CASES = [
    ([i % 12 for i in range(300)], 32),  # 12 classes, batch not a multiple of the class count
    ([0] * 200 + [1] * 50 + [2] * 7 + [3] * 3 + [4] * 1, 30),  # imbalanced, tiny classes
    ([0, 0, 1, 1, 1], 4),
]


@pytest.mark.parametrize("labels,batch_size", CASES)
def test_every_sample_every_epoch_and_full_batches(labels, batch_size):
    sampler = ClassBalancedBatchSampler(labels, batch_size, samples_per_class=4, seed=0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert {i for b in batches for i in b} == set(range(len(labels)))
        assert all(len(set(b)) == len(b) for b in batches)  # no weld twice in a batch
        assert all(len(b) == batch_size for b in batches[:-1])


@pytest.mark.parametrize("labels,batch_size", CASES)
def test_batches_hold_positives_and_negatives(labels, batch_size):
    labels_arr = np.asarray(labels)
    for batch in ClassBalancedBatchSampler(labels, batch_size, 4, seed=1):
        counts = np.bincount(labels_arr[batch])
        assert (counts >= 2).sum() >= 2


def test_reproducible_per_epoch_and_different_across_epochs():
    labels = [i % 5 for i in range(100)]
    a, b = ClassBalancedBatchSampler(labels, 20, 4, seed=7), ClassBalancedBatchSampler(labels, 20, 4, seed=7)
    a.set_epoch(2), b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


def test_single_class_split_is_refused():
    with pytest.raises(InputError, match="at least 2 classes"):
        ClassBalancedBatchSampler([0] * 50, 32)


def test_ddp_ranks_split_the_epoch():
    labels = [i % 6 for i in range(130)]
    whole = list(ClassBalancedBatchSampler(labels, 16, 4, seed=3))
    ranks = [list(ClassBalancedBatchSampler(labels, 16, 4, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == -(-len(whole) // 2)
    assert {i for r in ranks for b in r for i in b} == set(range(130))
    assert ranks[0][0] == whole[0] and ranks[1][0] == whole[1]
