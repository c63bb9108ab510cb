"""spml.evaluation.featvis: PCA colouring of the embedding (docs/method.md §5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spml.evaluation.featvis import embedding_pca_rgb


@pytest.fixture()
def embedding() -> torch.Tensor:
    return torch.randn(3, 64, 14, 14, generator=torch.Generator().manual_seed(0))


def test_shape_dtype_and_full_range_per_image(embedding: torch.Tensor) -> None:
    images = embedding_pca_rgb(embedding)
    assert images.shape == (3, 14, 14, 3) and images.dtype == np.uint8
    assert all(image.min() == 0 and image.max() == 255 for image in images)


def test_out_size_resizes_to_a_square_image(embedding: torch.Tensor) -> None:
    assert embedding_pca_rgb(embedding, out_size=56).shape == (3, 56, 56, 3)


def test_deterministic_and_each_image_independent_of_the_batch(embedding: torch.Tensor) -> None:
    images = embedding_pca_rgb(embedding)
    assert np.array_equal(images, embedding_pca_rgb(embedding.clone()))
    assert np.array_equal(images[1:2], embedding_pca_rgb(embedding[1:2]))


def test_pixel_norms_do_not_matter(embedding: torch.Tensor) -> None:
    scale = torch.rand(3, 1, 14, 14, generator=torch.Generator().manual_seed(1)) * 5 + 0.1
    assert np.abs(embedding_pca_rgb(embedding * scale).astype(int) - embedding_pca_rgb(embedding)).max() <= 1


def test_moving_pixels_moves_their_colours(embedding: torch.Tensor) -> None:
    flipped = embedding_pca_rgb(embedding.flip(-1))
    assert np.array_equal(flipped, embedding_pca_rgb(embedding)[:, :, ::-1])


def test_first_component_separates_two_clusters() -> None:
    embedding = torch.zeros(1, 64, 8, 8)
    embedding[0, 0, :, :4] = 1.0
    embedding[0, 1, :, 4:] = 1.0
    embedding += 0.01 * torch.randn(1, 64, 8, 8, generator=torch.Generator().manual_seed(2))
    image = embedding_pca_rgb(embedding)[0].astype(int)
    left, right = image[:, :4].reshape(-1, 3), image[:, 4:].reshape(-1, 3)
    assert np.abs(left.mean(0) - right.mean(0)).max() > 100
    assert left.std(0).max() < 30 and right.std(0).max() < 30


def test_rejects_a_map_that_is_not_an_embedding() -> None:
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        embedding_pca_rgb(torch.zeros(64, 8, 8))
