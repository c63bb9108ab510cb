"""Diagnostic top-5 prototype retrieval accuracy (docs/method.md §2.5 step 9; §6 G)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

TOP_K = 5
ROWS_PER_CHUNK = 4096
# Width of the column groups whose maxima select where a row's top 5 can lie (fastest of 64–1024 on an H100).
COLUMNS_PER_GROUP = 256


@torch.no_grad()
def prototype_accuracy(prototypes: Tensor, labels: Tensor) -> Tensor:
    """Fraction of each prototype's 5 most similar prototypes (itself included) sharing its label.

    ``prototypes`` ``[P, D]``, ``labels`` ``[P]``. Rows are scored in chunks so memory stays
    ``O(chunk·P)``; the result is a float32 0-d tensor, as the release computes it. With fewer
    than 5 prototypes all of them are retrieved.

    One topk over a long row is slow on a GPU, so each row ``s = chunk·prototypesᵀ`` is written by
    ``mm`` into ``G`` groups of ``W = COLUMNS_PER_GROUP`` columns (padding ``−inf``), and with group
    maxima ``m_g = max_{j∈g} s_j``, ``top5(s) = top5(s over the groups of top5(m))``: an element
    outside those 5 groups is beaten by their 5 maxima.
    Among equal similarities, which ones are retrieved is topk's choice, as with one full-row topk.
    """
    num_prototypes = prototypes.shape[0]
    top_k = min(TOP_K, num_prototypes)
    num_groups = -(-num_prototypes // COLUMNS_PER_GROUP)
    padding = num_groups * COLUMNS_PER_GROUP - num_prototypes
    similarity = prototypes.new_empty(min(ROWS_PER_CHUNK, num_prototypes), num_groups * COLUMNS_PER_GROUP)
    similarity[:, num_prototypes:].fill_(-math.inf)
    group_labels = F.pad(labels, (0, padding)).view(num_groups, COLUMNS_PER_GROUP)
    hits = []
    for chunk, chunk_labels in zip(prototypes.split(ROWS_PER_CHUNK), labels.split(ROWS_PER_CHUNK)):
        torch.mm(chunk, prototypes.T, out=similarity[: len(chunk), :num_prototypes])
        groups = similarity[: len(chunk)].view(len(chunk), num_groups, COLUMNS_PER_GROUP)
        kept = groups.amax(dim=2).topk(min(top_k, num_groups), dim=1).indices
        candidates = groups.gather(1, kept.unsqueeze(2).expand(-1, -1, COLUMNS_PER_GROUP)).flatten(1)
        retrieved = group_labels[kept].flatten(1).gather(1, candidates.topk(top_k, dim=1).indices)
        hits.append(retrieved == chunk_labels.unsqueeze(1))
    return torch.cat(hits).float().mean()
