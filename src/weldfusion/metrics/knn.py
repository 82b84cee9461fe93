"""k-nearest-neighbour classification and distance scores on embeddings (scikit-learn search).

Majority voting, or DINOv2-style temperature-weighted voting (softmax(similarity / T) per
neighbour, summed per class). One neighbour search answers both the votes and the distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors


@dataclass
class Neighbours:
    indices: np.ndarray  # (n_query, k) into the reference
    distances: np.ndarray  # (n_query, k), ascending


def search(reference: np.ndarray, query: np.ndarray, k: int, metric: str = "cosine", exclude_self: bool = False) -> Neighbours:
    """k nearest reference rows of each query row; `exclude_self` drops each query's own row
    (leave-one-out when the query is the reference)."""
    k_eff = min(k + int(exclude_self), len(reference))
    index = NearestNeighbors(n_neighbors=k_eff, metric=metric, algorithm="brute").fit(reference)
    distances, indices = index.kneighbors(query)
    if exclude_self:
        keep = indices != np.arange(len(query))[:, None]
        keep[keep.sum(1) > k_eff - 1, -1] = False  # own row not found among the neighbours: drop the farthest
        indices = indices[keep].reshape(len(query), k_eff - 1)
        distances = distances[keep].reshape(len(query), k_eff - 1)
    return Neighbours(indices, distances)


def vote(neighbours: Neighbours, reference_labels: np.ndarray, classes: int, metric: str = "cosine",
         temperature: float | None = None) -> np.ndarray:  # fmt: skip
    """Class probabilities (n_query, classes) from the neighbours' labels."""
    labels = reference_labels[neighbours.indices]
    if temperature is None:
        weights = np.ones_like(neighbours.distances)
    else:
        similarity = 1.0 - neighbours.distances if metric == "cosine" else -neighbours.distances
        logits = similarity / temperature
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    votes = np.zeros((len(labels), classes))
    np.add.at(votes, (np.arange(len(labels))[:, None].repeat(labels.shape[1], 1), labels), weights)
    return votes / votes.sum(axis=1, keepdims=True)


def predict(probabilities: np.ndarray) -> np.ndarray:
    """Most voted class; ties go to the smaller class id (as scikit-learn's KNeighborsClassifier)."""
    return probabilities.argmax(axis=1)
