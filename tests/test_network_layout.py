"""State-dict layout of the embedding model, input checks and the training-time pass (docs/method.md §1, §1.7, §1.8)."""
from __future__ import annotations

import pytest
import torch

from network import build_model, load_checkpoint, save_checkpoint
from network.sfnet import OUTPUT_NAMES
from reference_tables import parse_shape, read_tsv


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model()


@pytest.fixture(scope="module")
def release_layout(reference_dir) -> list[dict[str, str]]:
    return read_tsv(reference_dir / "embedding_model_keys.tsv")


def layout_of(state: dict[str, torch.Tensor]) -> list[tuple[str, tuple[int, ...], str]]:
    return [(name, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in state.items()]


def expected_layout(rows: list[dict[str, str]]) -> list[tuple[str, tuple[int, ...], str]]:
    return [(row["key"], parse_shape(row["shape"]), row["dtype"]) for row in rows]


def test_state_dict_layout_equals_release(model, release_layout):
    assert layout_of(model.state_dict()) == expected_layout(release_layout)


def test_parameters_and_buffers_match_release_kinds(model, release_layout):
    parameters = {name for name, _ in model.named_parameters()}
    kinds = {name: "parameter" if name in parameters else "buffer" for name in model.state_dict()}
    assert kinds == {row["key"]: row["kind"] for row in release_layout}


def test_saved_checkpoint_has_release_layout_and_round_trips(model, release_layout, tmp_path):
    path = tmp_path / "model.pth"
    save_checkpoint(model.double(), path)
    model.float()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert list(saved) == ["embedding_model"]
    assert layout_of(saved["embedding_model"]) == expected_layout(release_layout)

    reloaded = build_model()
    load_checkpoint(reloaded, path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name


@pytest.mark.parametrize("shape", [(1, 3, 192, 224), (1, 3, 256, 256), (3, 224, 224), (1, 1, 224, 224)])
def test_input_other_than_224_raises_value_error(model, shape):
    with pytest.raises(ValueError, match="224x224"):
        model(torch.zeros(shape), torch.zeros(shape))


def test_train_mode_adds_augmented_outputs_with_gradients(model):
    model.train()
    try:
        image, depth = torch.randn(1, 3, 224, 224), torch.rand(1, 3, 224, 224)
        outputs = model(image, depth)
        assert list(outputs) == [*OUTPUT_NAMES, "div1_aug", "embedding_aug"]
        assert outputs["div1_aug"].shape == (1, 1, 224, 224)
        assert outputs["embedding_aug"].shape == (1, 64, 56, 56)
        assert not torch.equal(outputs["div1_aug"], outputs["div1"])
        loss = sum(outputs[name].mean() for name in ("div1", "div1_aug", "embedding_aug", "contour_div1"))
        loss.backward()
        for name in ("div1_aug", "embedding_aug"):
            assert torch.isfinite(outputs[name]).all(), name
        first_conv = model.sfnet.rgb_swin.patch_embed.proj.weight.grad
        assert first_conv is not None and torch.isfinite(first_conv).all() and first_conv.abs().sum() > 0
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_eval_mode_has_no_augmented_outputs(model):
    model.eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 224, 224), torch.rand(1, 3, 224, 224))
    assert list(outputs) == list(OUTPUT_NAMES)


def test_the_feed_forward_runs_channels_last_on_the_cpu_without_copying_the_tokens(monkeypatch):
    import network.swin_block as swin_block

    tokens = torch.randn(2, 14, 14, 16, dtype=torch.float64)
    feature_map = tokens.permute(0, 3, 1, 2)
    on_cpu = swin_block.feed_forward_layout(feature_map)
    assert on_cpu.data_ptr() == tokens.data_ptr() and on_cpu.is_contiguous(memory_format=torch.channels_last)
    assert swin_block.feed_forward_layout(feature_map.contiguous()).is_contiguous(memory_format=torch.channels_last)
    elsewhere = swin_block.feed_forward_layout(feature_map.to("meta"))
    assert elsewhere.is_contiguous() and not elsewhere.is_contiguous(memory_format=torch.channels_last)

    torch.manual_seed(0)
    block = swin_block.SwinBlock(16, 14, 2, swin_block.SHIFT_SIZE, 0.0).double().train()
    x = torch.randn(2, 16, 14, 14, dtype=torch.float64)
    channels_last = block(x)
    monkeypatch.setattr(swin_block, "feed_forward_layout", lambda feature_map: feature_map.contiguous())
    nchw = block(x)
    assert channels_last.is_contiguous(memory_format=torch.channels_last) and nchw.is_contiguous()
    assert torch.allclose(channels_last, nchw, rtol=0, atol=1e-13)
