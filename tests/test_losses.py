"""spml.losses: the individual terms, the memory bank, and DHFRObjective on small synthetic batches."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spml.clustering import INSTANCE_RANGE
from spml.losses import DHFRObjective, MemoryBank
from spml.losses import prototype_accuracy as accuracy_module
from spml.losses.hypersphere import semantic_annotation_loss
from spml.losses.parted_ce import SIDE_WEIGHTS, scribble_cross_entropy
from spml.losses.prototype_accuracy import prototype_accuracy
from spml.losses.segsort import fused_segsort_loss, segsort_loss
from spml.losses.structure_consistency import structure_consistency

LOSS_KEYS = ("sem_ann_loss", "img_sim_loss", "partedCE_loss", "ssc_loss", "smo_loss", "contour_loss")


def synthetic_batch(num_images: int = 2, size: int = 64, grid: int = 16, dim: int = 8, seed: int = 0):
    """Random network outputs (leaf tensors), labels with fg/bg scribble bands and unknown elsewhere, and the image."""
    generator = torch.Generator().manual_seed(seed)

    def probability(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64).mul(0.9).add(0.05).requires_grad_()

    outputs = {name: probability(num_images, 1, size, size) for name in (*SIDE_WEIGHTS, "contour_div1", "div1_aug")}
    for name in ("embedding", "embedding_aug"):
        outputs[name] = torch.randn(num_images, dim, grid, grid, generator=generator, dtype=torch.float64).requires_grad_()
    semantic = torch.full((num_images, size, size), 2, dtype=torch.long)
    semantic[:, : size // 4] = 0
    semantic[:, size // 2 : size // 2 + size // 8] = 1
    labels = {
        "semantic_label": semantic,
        "instance_label": torch.randint(2, 40, (num_images, size, size), generator=generator),
        "contour_sum_label": torch.rand(num_images, size, size, generator=generator),
    }
    return outputs, labels, torch.randn(num_images, 3, size, size, generator=generator)


def test_scribble_cross_entropy_is_softmax_ce_over_probabilities_as_logits():
    torch.manual_seed(0)
    probability = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    semantic = torch.randint(0, 3, (2, 8, 8))
    logits = torch.cat((1 - probability, probability), dim=1)
    ce = nn.CrossEntropyLoss(ignore_index=255)
    expected_fg = ce(logits, torch.where(semantic == 1, 1, 255))
    expected_bg = ce(logits, torch.where(semantic == 0, 0, 255))
    fg, bg = scribble_cross_entropy(probability, semantic)
    torch.testing.assert_close(fg, expected_fg)
    torch.testing.assert_close(bg, expected_bg)


def test_scribble_cross_entropy_is_zero_without_foreground():
    fg, bg = scribble_cross_entropy(torch.full((1, 1, 4, 4), 0.3), torch.zeros(1, 4, 4, dtype=torch.long))
    assert fg == 0 and torch.isfinite(bg) and bg > 0


def test_structure_consistency_vanishes_for_identical_maps_and_grows_with_difference():
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    assert structure_consistency(x, x.clone()) == pytest.approx(0, abs=1e-12)
    assert structure_consistency(x, x.flip(-1)) > structure_consistency(x, x + 0.01) > 0


def test_segsort_margin_applies_to_positives_only():
    kappa, margin = 6.0, 0.5
    pixel = torch.nn.functional.normalize(torch.tensor([[[1.0, 1.0]]], dtype=torch.float64), dim=-1)
    prototypes = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]], dtype=torch.float64)
    labels = torch.tensor([[0, 0, 1]])
    loss = segsort_loss(pixel, torch.tensor([[0]]), torch.tensor([[0]]), prototypes, labels, torch.ones(1, 3, dtype=torch.bool), kappa, margin)
    cos = 1 / math.sqrt(2)
    # The other same-label prototype (index 1) is the positive; the own one is excluded.
    positive = math.exp(kappa * (cos - margin))
    negative = math.exp(kappa * -cos)
    assert loss.item() == pytest.approx(-math.log(positive / (positive + negative)), rel=1e-12)


def test_segsort_uses_own_prototype_when_it_is_the_only_positive_and_ignores_padding():
    kappa, margin = 16.0, 0.5
    pixel = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)
    prototypes = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]], dtype=torch.float64)
    valid = torch.tensor([[True, True, False]])
    loss = segsort_loss(pixel, torch.tensor([[3]]), torch.tensor([[0]]), prototypes, torch.tensor([[3, 4, 3]]), valid, kappa, margin)
    positive = math.exp(kappa * (1 - margin))
    assert loss.item() == pytest.approx(-math.log(positive / (positive + 1.0)), rel=1e-12)


def segsort_case(groups: int, pixels: int, prototypes: int, dim: int, seed: int) -> tuple:
    """Random float64 SegSort inputs with padded (zero, invalid) prototypes; the last pixel of every
    group owns the group's only prototype of a label of its own (the ``same <= 0 -> own`` branch)."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(groups, pixels, dim, generator=generator, dtype=torch.float64)
    p = torch.randn(groups, prototypes, dim, generator=generator, dtype=torch.float64)
    valid = torch.ones(groups, prototypes, dtype=torch.bool)
    valid[0, -2:] = False
    p[0, -2:] = 0.0
    prototype_label = torch.randint(0, 3, (groups, prototypes), generator=generator)
    prototype_label[:, 0] = 9
    own = torch.randint(1, prototypes - 2, (groups, pixels), generator=generator)
    own[:, -1] = 0
    return z, prototype_label.gather(1, own), own, p, prototype_label, valid


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_fused_segsort_passes_gradcheck(margin):
    z, label, own, p, prototype_label, valid = segsort_case(2, 5, 6, 3, seed=1)
    inputs = (z.requires_grad_(), p.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, y: fused_segsort_loss(x, label, own, y, prototype_label, valid, 3.0, margin), inputs)


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_fused_segsort_equals_reference_in_value_and_gradients(margin):
    z, label, own, p, prototype_label, valid = segsort_case(3, 200, 40, 8, seed=2)
    weight = torch.rand(3, 200, dtype=torch.float64)
    results = []
    for loss_fn in (segsort_loss, fused_segsort_loss):
        leaves = (z.clone().requires_grad_(), p.clone().requires_grad_())
        loss = loss_fn(leaves[0], label, own, leaves[1], prototype_label, valid, 6.0, margin)
        (loss * weight).sum().backward()
        results.append((loss.detach(), leaves[0].grad, leaves[1].grad))
    for expected, actual in zip(*results):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_sem_ann_ignores_unknown_pixels_and_prototypes():
    torch.manual_seed(0)
    pixels = torch.nn.functional.normalize(torch.randn(6, 4, dtype=torch.float64), dim=-1)
    prototypes = torch.nn.functional.normalize(torch.randn(4, 4, dtype=torch.float64), dim=-1)
    pixel_label, own, prototype_label = torch.tensor([0, 1, 0, 1, 0, 1]), torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([0, 1, 0, 1])
    base = semantic_annotation_loss(pixels, pixel_label, own, prototypes, prototype_label, 2, 6.0, 0.5, num_kept_pixels=6, num_kept_prototypes=4)
    # An unknown prototype in front shifts every own index by one; an unknown pixel owns it.
    extra = torch.nn.functional.normalize(torch.randn(1, 4, dtype=torch.float64), dim=-1)
    with_unknown = semantic_annotation_loss(
        torch.cat((pixels, extra)),
        torch.cat((pixel_label, torch.tensor([2]))),
        torch.cat((own + 1, torch.tensor([0]))),
        torch.cat((extra, prototypes)),
        torch.cat((torch.tensor([2]), prototype_label)),
        2,
        6.0,
        0.5,
        num_kept_pixels=6,
        num_kept_prototypes=4,
    )
    torch.testing.assert_close(with_unknown, base, rtol=1e-12, atol=0)


def test_prototype_accuracy_counts_top5_label_agreement_including_self(monkeypatch):
    # Two tight groups of 5 on opposite poles: every top-5 set is the own group.
    torch.manual_seed(0)
    group = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, 0.0]) + 0.01 * torch.randn(5, 3), dim=-1)
    prototypes = torch.cat((group, -group))
    assert prototype_accuracy(prototypes, torch.tensor([0] * 5 + [1] * 5)).item() == 1.0
    mixed = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    whole = prototype_accuracy(prototypes, mixed)
    assert whole.dtype == torch.float32 and whole.item() == pytest.approx((4 * 4 + 1 + 5 * 5) / 50)
    monkeypatch.setattr(accuracy_module, "ROWS_PER_CHUNK", 3)
    assert prototype_accuracy(prototypes, mixed) == whole


def full_row_top5_accuracy(prototypes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The one-stage reference: one topk over each whole row of the similarity matrix."""
    retrieved = (prototypes @ prototypes.T).topk(min(5, len(prototypes)), dim=1).indices
    return (labels[retrieved] == labels.unsqueeze(1)).float().mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_prototypes", [3, 300, 1000, 1024, 2999])
def test_prototype_accuracy_by_group_maxima_equals_a_full_row_top5(monkeypatch, num_prototypes, dtype):
    # Groups of 100 columns: several, a padded last one unless P is a multiple of 100, fewer groups
    # than 5 for P = 300, one (and all retrieved) for P < 5; chunks of 700 rows, the last one shorter.
    monkeypatch.setattr(accuracy_module, "COLUMNS_PER_GROUP", 100)
    monkeypatch.setattr(accuracy_module, "ROWS_PER_CHUNK", 700)
    generator = torch.Generator().manual_seed(num_prototypes)
    prototypes = torch.nn.functional.normalize(torch.randn(num_prototypes, 64, generator=generator, dtype=dtype), dim=-1)
    labels = torch.randint(0, 2, (num_prototypes,), generator=generator)
    accuracy = prototype_accuracy(prototypes, labels)
    assert accuracy.dtype == torch.float32 and accuracy.dim() == 0
    assert accuracy == full_row_top5_accuracy(prototypes, labels)


def test_prototype_accuracy_never_retrieves_the_padding_of_the_last_group():
    # Two antipodal prototypes: each one's similarity to the other (-1) is below a padding column's 0·x.
    prototypes = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert prototype_accuracy(prototypes, torch.tensor([0, 1])).item() == 0.5


def memory_state(step: int, batch_size: int = 2) -> dict:
    state = {"batch_size": batch_size}
    for suffix in ("", "_aug"):
        state[f"prototype{suffix}"] = torch.full((3, 4), float(step), requires_grad=True) * 1
        state[f"prototype_semantic_label{suffix}"] = torch.tensor([0, 1, 2])
        state[f"prototype_instance_label{suffix}"] = torch.tensor([5, 6, 7])
        state[f"prototype_batch_index{suffix}"] = torch.tensor([0, 1, 1])
    return state


def test_memory_bank_is_a_fifo_that_shifts_batch_indices_per_push():
    memory = MemoryBank(size=2)
    assert memory.semantic_prototypes() is None
    for step in (1, 2, 3):
        memory.push(memory_state(step))
    assert len(memory) == 2
    older, newer = memory.entries
    assert older["prototype"][0, 0] == 2 and newer["prototype"][0, 0] == 3
    assert older["prototype_batch_index"].tolist() == [4, 5, 5]
    assert newer["prototype_batch_index_aug"].tolist() == [2, 3, 3]
    assert not newer["prototype"].requires_grad
    prototypes, labels = memory.semantic_prototypes()
    # Plain entries oldest first, then augmented entries oldest first.
    assert prototypes[:, 0].tolist() == [2.0] * 3 + [3.0] * 3 + [2.0] * 3 + [3.0] * 3
    assert labels.tolist() == [0, 1, 2] * 4


def test_memory_bank_of_size_zero_keeps_nothing_and_rejects_incomplete_states():
    memory = MemoryBank(size=0)
    memory.push(memory_state(1))
    assert len(memory) == 0
    with pytest.raises(KeyError, match="prototype_aug"):
        MemoryBank().push({key: value for key, value in memory_state(1).items() if key != "prototype_aug"})


def test_memory_bank_state_dict_round_trip_keeps_entries_and_later_pushes_identical():
    memory, restored = MemoryBank(size=2), MemoryBank(size=2)
    for step in (1, 2):
        memory.push(memory_state(step))
    restored.load_state_dict(memory.state_dict())
    memory.push(memory_state(3))
    restored.push(memory_state(3))
    for ours, theirs in zip(memory.entries, restored.entries, strict=True):
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    smaller = MemoryBank(size=1)
    smaller.load_state_dict(memory.state_dict())
    assert len(smaller) == 1 and smaller.entries[0]["prototype"][0, 0] == 3
    with pytest.raises(KeyError, match="prototype_aug"):
        MemoryBank().load_state_dict({"entries": [{key: value for key, value in memory.entries[0].items() if key != "prototype_aug"}]})


def test_memory_bank_takes_the_batch_size_as_a_python_int():
    with pytest.raises(TypeError, match="batch_size"):
        MemoryBank().push({**memory_state(1), "batch_size": torch.tensor(2)})


@pytest.mark.parametrize("missing_class", [0, 1, None], ids=["no-background", "no-foreground", "no-scribble"])
def test_objective_is_finite_when_a_scribble_class_is_missing(missing_class):
    outputs, labels, image = synthetic_batch()
    semantic = labels["semantic_label"]
    labels["semantic_label"] = torch.where(semantic != 2, 2, semantic) if missing_class is None else torch.where(semantic == missing_class, 2, semantic)
    result = DHFRObjective()(outputs, labels, image)
    for key in (*LOSS_KEYS, "loss", "accuracy"):
        assert torch.isfinite(result[key]), key
        assert result[key].dim() == 0


def test_objective_rejects_instance_labels_beyond_the_key_range():
    outputs, labels, image = synthetic_batch()
    labels["instance_label"][0, 0, 0] = INSTANCE_RANGE
    with pytest.raises(ValueError, match="instance labels in 0..256"):
        DHFRObjective()(outputs, labels, image)


def test_objective_gradients_reach_embeddings_and_every_side_output():
    outputs, labels, image = synthetic_batch()
    memory = MemoryBank()
    objective = DHFRObjective()
    memory.push(objective(outputs, labels, image)["memory_state"])
    objective(outputs, labels, image, memory)["loss"].backward()
    for name, tensor in outputs.items():
        assert tensor.grad is not None, name
        assert torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name


def test_objective_memory_state_is_detached_and_counts_the_batch():
    outputs, labels, image = synthetic_batch(num_images=3)
    state = DHFRObjective()(outputs, labels, image)["memory_state"]
    assert state["batch_size"] == 3
    assert not state["prototype"].requires_grad and not state["prototype_aug"].requires_grad
    assert set(state["prototype_batch_index"].tolist()) == {0, 1, 2}


def test_objective_without_accuracy_leaves_it_out_and_gives_the_same_losses_and_memory_state():
    outputs, labels, image = synthetic_batch()
    memory = MemoryBank()
    objective = DHFRObjective()
    memory.push(objective(outputs, labels, image)["memory_state"])
    full, without = (objective(outputs, labels, image, memory, accuracy=accuracy) for accuracy in (True, False))
    assert "accuracy" in full and "accuracy" not in without
    for key in (*LOSS_KEYS, "loss"):
        assert torch.equal(full[key], without[key]), key
    for key, value in full["memory_state"].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(without["memory_state"][key])), key
