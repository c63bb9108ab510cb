"""spml.clustering: location features, grid start, batched spherical k-means, segments, prototypes."""
from __future__ import annotations

import torch

from spml.clustering import (
    INSTANCE_RANGE,
    build_segments,
    grid_initial_labels,
    grid_num_clusters,
    labels_in_key_range,
    location_features,
    pixel_features,
    resize_labels,
    segment_keys,
    segment_prototypes,
    spherical_kmeans,
)


def segments_of(batch_index, clusters, semantic, instance, num_images, num_clusters):
    """build_segments with the sizes read here (the objective reads them together with the step's other sizes)."""
    keys = segment_keys(batch_index, clusters, semantic, instance, num_images, num_clusters)
    return build_segments(keys, int(keys.num_segments()), int(keys.max_segments_per_image()))


def test_location_features_span_minus_half_to_half_row_major():
    location = location_features(4, 3, dtype=torch.float64, device=torch.device("cpu"))
    assert location.shape == (12, 2)
    assert location[0].tolist() == [-0.5, -0.5]
    assert location[2].tolist() == [-0.5, 0.5]  # first row, last column: (y, x)
    assert location[-1].tolist() == [0.5, 0.5]


def test_grid_initial_labels_make_6x6_cells_of_release_widths():
    labels = grid_initial_labels(56, 56, (6, 6), device=torch.device("cpu")).reshape(56, 56)
    assert torch.equal(torch.unique(labels), torch.arange(36))
    assert grid_num_clusters(56, 56, (6, 6)) == 36
    row_widths = torch.unique_consecutive(labels[:, 0], return_counts=True)[1]
    assert row_widths.tolist() == [6, 11, 11, 11, 11, 6]
    # Label = row cell + 6 · column cell.
    assert labels[0, 55] == 30 and labels[55, 0] == 5


def test_grid_initial_labels_are_compact_when_the_grid_has_more_cells_than_the_image_pixels():
    for height, width, grid in [(4, 3, (6, 6)), (5, 40, (6, 6)), (12, 2, (3, 7)), (1, 1, (6, 6))]:
        row_cell = torch.linspace(0, grid[0] - 1, height).round().long()
        col_cell = torch.linspace(0, grid[1] - 1, width).round().long()
        expected = torch.unique((row_cell[:, None] + grid[0] * col_cell[None, :]).reshape(-1), return_inverse=True)[1]
        assert torch.equal(grid_initial_labels(height, width, grid, device=torch.device("cpu")), expected)
        assert grid_num_clusters(height, width, grid) == int(expected.max()) + 1


def test_kmeans_moves_a_straddling_grid_cell_onto_the_two_groups():
    torch.manual_seed(0)
    left = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, 0.0]) + 0.05 * torch.randn(8, 12, 3), dim=-1)
    right = torch.nn.functional.normalize(torch.tensor([-1.0, 0.0, 0.0]) + 0.05 * torch.randn(8, 12, 3), dim=-1)
    features = torch.cat((left, right), dim=1).reshape(1, -1, 3)  # an 8x24 image, left half vs right half
    # Three column cells: the middle one straddles both halves and must empty out.
    labels = spherical_kmeans(features, grid_initial_labels(8, 24, (1, 3), device=torch.device("cpu")), num_clusters=3, iterations=10)
    grid = labels.reshape(8, 24)
    assert torch.unique(grid[:, :12]).numel() == 1 and torch.unique(grid[:, 12:]).numel() == 1
    assert grid[0, 0] == 0 and grid[0, 23] == 2


def test_segments_split_by_cluster_semantic_and_instance_and_decode_labels():
    batch_index = torch.tensor([0, 0, 0, 0, 1, 1])
    clusters = torch.tensor([3, 3, 3, 1, 0, 0])
    semantic = torch.tensor([0, 0, 2, 0, 1, 1])
    instance = torch.tensor([7, 7, 7, 7, 5, 9])
    segments = segments_of(batch_index, clusters, semantic, instance, num_images=2, num_clusters=4)
    # Ascending (image, cluster, semantic, instance): (0,1,0,7) (0,3,0,7) (0,3,2,7) (1,0,1,5) (1,0,1,9).
    assert segments.index.tolist() == [1, 1, 2, 0, 3, 4]
    assert segments.batch_index.tolist() == [0, 0, 0, 1, 1]
    assert segments.semantic_label.tolist() == [0, 0, 2, 1, 1]
    assert segments.instance_label.tolist() == [7, 7, 7, 5, 9]
    assert segments.per_image.tolist() == [3, 2] and segments.max_per_image == 3


def test_segment_keys_count_segments_and_scribbled_segments():
    batch_index = torch.tensor([0, 0, 0, 1, 1])
    keys = segment_keys(batch_index, torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 2, 1, 0, 0]),
                        torch.tensor([1, 1, INSTANCE_RANGE - 1, 3, 3]), num_images=2, num_clusters=2)
    assert keys.num_segments() == 4 and keys.max_segments_per_image() == 3
    assert keys.num_scribbled_segments(2) == 3


def test_labels_in_key_range_rejects_unknown_semantic_values_and_instance_overflow():
    semantic, instance = torch.tensor([0, 1, 2]), torch.tensor([1, 200, INSTANCE_RANGE - 1])
    assert labels_in_key_range(semantic, instance)
    assert not labels_in_key_range(torch.tensor([0, 1, 255]), instance)
    assert not labels_in_key_range(semantic, torch.tensor([1, 200, INSTANCE_RANGE]))


def test_segment_prototypes_are_normalised_member_sums():
    features = torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, -2.0]])
    prototypes = segment_prototypes(features, torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(prototypes, torch.tensor([[0.6, 0.8], [0.0, -1.0]]))


def test_resize_labels_picks_every_fourth_pixel():
    label = torch.randint(0, 200, (2, 224, 224))
    assert torch.equal(resize_labels(label, (56, 56)), label[:, ::4, ::4])


def test_clustering_of_each_image_is_independent_of_batch_order():
    torch.manual_seed(1)
    num_images, height, width = 3, 12, 12
    embedding = torch.randn(num_images, 8, height, width, dtype=torch.float64)
    semantic = torch.randint(0, 3, (num_images, height * width))
    instance = torch.randint(0, 4, (num_images, height * width))
    order = torch.tensor([2, 0, 1])

    def cluster(embedding, semantic, instance):
        z, zl = pixel_features(embedding)
        clusters = spherical_kmeans(zl, grid_initial_labels(height, width, (6, 6), device=embedding.device), num_clusters=36, iterations=10)
        batch_index = torch.arange(num_images).repeat_interleave(height * width)
        segments = segments_of(batch_index, clusters.reshape(-1), semantic.reshape(-1), instance.reshape(-1), num_images, num_clusters=36)
        return clusters, segments, segment_prototypes(z.reshape(-1, 8), segments.index, segments.count)

    clusters, segments, prototypes = cluster(embedding, semantic, instance)
    clusters_p, segments_p, prototypes_p = cluster(embedding[order], semantic[order], instance[order])
    assert torch.equal(clusters_p, clusters[order])
    per_image_index = segments.index.reshape(num_images, -1)
    per_image_index_p = segments_p.index.reshape(num_images, -1)
    for new_position, old_position in enumerate(order.tolist()):
        old_ids, new_ids = per_image_index[old_position], per_image_index_p[new_position]
        # Same partition of the image's pixels, and the same prototypes and labels per segment.
        assert torch.equal(new_ids - new_ids.min(), old_ids - old_ids.min())
        torch.testing.assert_close(prototypes_p[new_ids], prototypes[old_ids], rtol=0, atol=1e-12)
        assert torch.equal(segments_p.semantic_label[new_ids], segments.semantic_label[old_ids])
        assert torch.equal(segments_p.batch_index[new_ids], torch.full_like(new_ids, new_position))
