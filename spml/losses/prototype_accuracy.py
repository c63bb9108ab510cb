"""Diagnostic top-5 prototype retrieval accuracy (docs/method.md §2.5 step 9; §6 G)."""
from __future__ import annotations

import torch
from torch import Tensor

TOP_K = 5
ROWS_PER_CHUNK = 4096


@torch.no_grad()
def prototype_accuracy(prototypes: Tensor, labels: Tensor) -> Tensor:
    """Fraction of each prototype's 5 most similar prototypes (itself included) sharing its label.

    ``prototypes`` ``[P, D]``, ``labels`` ``[P]``. Rows are scored in chunks so memory stays
    ``O(chunk·P)``; the result is a float32 0-d tensor, as the release computes it. With fewer
    than 5 prototypes all of them are retrieved.
    """
    top_k = min(TOP_K, prototypes.shape[0])
    hits = [
        labels[torch.topk(chunk @ prototypes.T, top_k, dim=1).indices] == chunk_labels.unsqueeze(1)
        for chunk, chunk_labels in zip(prototypes.split(ROWS_PER_CHUNK), labels.split(ROWS_PER_CHUNK))
    ]
    return torch.cat(hits).float().mean()
