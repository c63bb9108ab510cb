"""Release checkpoint loading errors, dtype handling and the ImageNet initialisation map (docs/method.md §1.8)."""
from __future__ import annotations

import pytest
import torch

import pickle
import zipfile

from network import (CheckpointError, build_model, imagenet_source_key, init_from_imagenet, load_checkpoint,
                     read_torch_file)
from reference_tables import parse_shape, read_tsv


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model()


@pytest.fixture()
def state(model) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module")
def imagenet_checkpoint(reference_dir) -> dict[str, torch.Tensor]:
    """Random entries with the names and shapes of the LocalViT-Swin-Tiny ImageNet checkpoint."""
    generator = torch.Generator().manual_seed(0)
    checkpoint = {}
    for row in read_tsv(reference_dir / "imagenet_checkpoint_keys.tsv"):
        shape = parse_shape(row["shape"])
        if row["key"].endswith(("relative_position_index", "num_batches_tracked")):
            checkpoint[row["key"]] = torch.randint(0, 1000, shape, generator=generator)
        else:
            checkpoint[row["key"]] = torch.randn(shape, generator=generator)
    return checkpoint


def test_loads_release_layout_and_bare_state_dict(model, state):
    state["sfnet.classifier_div1.bias"] += 1.0
    load_checkpoint(model, {"embedding_model": state})
    assert torch.equal(model.sfnet.classifier_div1.bias.detach(), state["sfnet.classifier_div1.bias"])
    state["sfnet.classifier_div1.bias"] -= 1.0
    load_checkpoint(model, state)
    assert torch.equal(model.sfnet.classifier_div1.bias.detach(), state["sfnet.classifier_div1.bias"])


def test_float64_model_loads_float64_entries_exactly():
    model = build_model().double()
    state = {
        name: torch.rand(t.shape, dtype=torch.float64) if t.is_floating_point() else t.clone()
        for name, t in model.state_dict().items()
    }
    load_checkpoint(model, state)
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == state[name].dtype, name
        assert torch.equal(tensor, state[name]), name


def test_missing_entry_is_named(model, state):
    del state["sfnet.dec_div4_merging.layers.3.w_attn.attn_mask"]
    with pytest.raises(CheckpointError, match=r"missing entry 'sfnet\.dec_div4_merging\.layers\.3\.w_attn\.attn_mask'"):
        load_checkpoint(model, {"embedding_model": state})


def test_unexpected_entry_is_named(model, state):
    state["sfnet.rgb_swin.norm.weight"] = torch.ones(384)
    with pytest.raises(CheckpointError, match=r"unexpected entry 'sfnet\.rgb_swin\.norm\.weight'"):
        load_checkpoint(model, state)


def test_mis_shaped_entry_is_named(model, state):
    state["sfnet.classifier_div8.weight"] = torch.zeros(1, 64, 1, 1)
    with pytest.raises(CheckpointError, match=r"'sfnet\.classifier_div8\.weight' has shape \[1, 64, 1, 1\]"):
        load_checkpoint(model, state)


def _whole(tmp_path, **kwargs) -> bytes:
    path = tmp_path / "whole.pth"
    torch.save({"embedding_model": {"w": torch.zeros(1000)}}, path, **kwargs)
    return path.read_bytes()


CORRUPTIONS = {
    "html": (lambda tmp: b"<!DOCTYPE html><html><body>Google Drive - Virus scan warning</body></html>",
             "an HTML page"),
    "empty": (lambda tmp: b"", "empty file (0 bytes)"),
    "truncated-zip": (lambda tmp: _whole(tmp)[:2000], "truncated zip/torch archive"),
    "truncated-legacy": (lambda tmp: _whole(tmp, _use_new_zipfile_serialization=False)[:3000],
                         "truncated torch file"),
    "text": (lambda tmp: b"hello world\n", "not a torch file (it starts with b'hello world"),
    "plain-pickle": (lambda tmp: pickle.dumps({"a": 1}, protocol=4), "not a torch checkpoint"),
    "other-zip": (lambda tmp: _zip_bytes(tmp), "a zip archive, but not a torch file"),
}


def _zip_bytes(tmp_path) -> bytes:
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return path.read_bytes()


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
@pytest.mark.parametrize("reader", ["release", "imagenet", "state"])
def test_a_corrupt_file_gives_one_line_naming_it_and_what_it_looks_like(model, tmp_path, kind, reader):
    make, expected = CORRUPTIONS[kind]
    path = tmp_path / "model-109249.pth"
    path.write_bytes(make(tmp_path))
    read = {"release": lambda: load_checkpoint(model, path), "imagenet": lambda: init_from_imagenet(model, path),
            "state": lambda: read_torch_file(path, required_keys=("optimizer",))}[reader]
    with pytest.raises(CheckpointError) as caught:
        read()
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message and "weights_only" not in message
    assert caught.value.__cause__ is None


def test_objects_other_than_tensors_are_refused_in_one_line(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"args": __import__("argparse").Namespace(lr=1)}, path)
    with pytest.raises(CheckpointError, match=r"objects\.pth: holds Python objects other than tensors.*Namespace") as caught:
        read_torch_file(path)
    assert "\n" not in str(caught.value) and "weights_only" not in str(caught.value)


def test_a_checkpoint_of_another_kind_is_named(model, tmp_path, state):
    release, imagenet, state_file = tmp_path / "release.pth", tmp_path / "imagenet.pth", tmp_path / "s.pth"
    torch.save({"embedding_model": state}, release)
    torch.save({"model": {"layers.0.w": torch.zeros(1)}}, imagenet)
    torch.save({"iteration": 3, "optimizer": {}, "memory_bank": []}, state_file)
    with pytest.raises(CheckpointError, match=r"imagenet\.pth: expected a DHFR model checkpoint, found ImageNet weights"):
        load_checkpoint(model, imagenet)
    with pytest.raises(CheckpointError, match=r"s\.pth: expected a DHFR model checkpoint, found a training state file"):
        load_checkpoint(model, state_file)
    with pytest.raises(CheckpointError, match=r"release\.pth: expected ImageNet weights, found a DHFR model checkpoint"):
        init_from_imagenet(model, release)
    with pytest.raises(CheckpointError, match=r"release\.pth: lacks 'optimizer', 'iteration'; it looks like a DHFR model"):
        read_torch_file(release, required_keys=("optimizer", "iteration"))
    assert read_torch_file(state_file, required_keys=("optimizer", "iteration"))["iteration"] == 3


def test_a_model_of_other_entries_gets_a_summary_of_missing_and_unexpected(model, tmp_path, state):
    state = {f"other.{name}": value for name, value in list(state.items())[:5]}
    path = tmp_path / "other-model.pth"
    torch.save({"embedding_model": state}, path)
    with pytest.raises(CheckpointError, match=r"not a checkpoint of this model: missing entry .* missing in all\); "
                                              r"unexpected entry 'other\..*' \(5 unexpected in all\)"):
        load_checkpoint(model, path)


def test_missing_file_and_folder_are_named(model, tmp_path):
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'absent.pth'}: checkpoint file not found"):
        load_checkpoint(model, tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match=rf"{tmp_path}: is a folder"):
        read_torch_file(tmp_path)


def test_imagenet_map_equals_reference(model, reference_dir):
    rows = read_tsv(reference_dir / "imagenet_init_map.tsv")
    derived = {target: imagenet_source_key(target) for target in model.state_dict()}
    assert {t: s for t, s in derived.items() if s is not None} == {row["target_key"]: row["source_key"] for row in rows}
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert all(shapes[row["target_key"]] == parse_shape(row["shape"]) for row in rows)


def test_init_from_imagenet_copies_mapped_entries_only(reference_dir, imagenet_checkpoint, tmp_path):
    model = build_model()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    path = tmp_path / "localvit_swin.pth"
    torch.save({"model": imagenet_checkpoint}, path)

    initialised = init_from_imagenet(model, path)

    expected = [row["target_key"] for row in read_tsv(reference_dir / "imagenet_init_map.tsv")]
    assert sorted(initialised) == sorted(expected)
    after = model.state_dict()
    for name in initialised:
        source = imagenet_checkpoint[imagenet_source_key(name)]
        assert torch.equal(after[name], source.to(after[name].dtype)), name
    for name in set(after) - set(initialised):
        assert torch.equal(after[name], before[name]), name


def test_init_from_imagenet_names_missing_source_entry(model, imagenet_checkpoint):
    incomplete = dict(imagenet_checkpoint)
    del incomplete["layers.2.blocks.1.attn.qkv.weight"]
    with pytest.raises(CheckpointError, match=r"missing ImageNet entry 'layers\.2\.blocks\.1\.attn\.qkv\.weight'"):
        init_from_imagenet(model, {"model": incomplete})


def test_init_from_imagenet_names_mis_shaped_source_entry(model, imagenet_checkpoint):
    wrong = dict(imagenet_checkpoint)
    wrong["layers.1.downsample.reduction.weight"] = torch.zeros(384, 384)
    with pytest.raises(CheckpointError, match=r"ImageNet entry 'layers\.1\.downsample\.reduction\.weight'.*shape \[384, 384\]"):
        init_from_imagenet(model, {"model": wrong})
