"""Precision settings (network.precision) and the CPU-side checks of the CUDA-graph wrappers."""
from __future__ import annotations

import pytest
import torch

import network
from network import build_model
from network.cuda_graphs import GraphedEval, graphed_training_forward
from network.precision import autocast, check_precision, set_float32_precision


def test_importing_the_network_sets_exact_float32():
    assert network  # imported above: the package default is in force
    assert not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cuda.matmul.allow_tf32


def test_tf32_is_opt_in_and_reversible():
    try:
        set_float32_precision("tf32")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        set_float32_precision("fp32")
    assert not torch.backends.cudnn.allow_tf32


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16, fp16; got 'half'"):
        check_precision("half")


def test_autocast_only_for_reduced_precisions():
    with autocast("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")
    with autocast("fp32", torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")


def test_cuda_graphs_refuse_a_cpu_model():
    model = build_model()
    with pytest.raises(ValueError, match="CUDA graphs need the model on a CUDA device; it is on cpu"):
        GraphedEval(model)
    with pytest.raises(ValueError, match="CUDA graphs need the model on a CUDA device"):
        graphed_training_forward(model.train(), batch_size=2)


def test_evaluation_on_the_cpu_runs_the_model_in_fp32_only():
    from spml.evaluation.inference import eval_network

    model = build_model()
    assert eval_network(model) is model
    with pytest.raises(ValueError, match="--precision bf16: needs a CUDA device"):
        eval_network(model, precision="bf16")
