from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

from nlrd.device import autocast, resolve_device


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_picks_the_cpu_without_cuda(no_cuda):
    assert resolve_device() == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_picks_the_gpu_with_cuda(one_gpu):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_cuda_is_an_error(no_cuda):
    for name in ("cuda", "cuda:0"):
        with pytest.raises(RuntimeError, match=f"'{name}' requested but CUDA is not available"):
            resolve_device(name)


def test_a_missing_gpu_index_is_an_error(one_gpu):
    with pytest.raises(RuntimeError, match="'cuda:1'.*only 1 CUDA device"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("name", ["gpu", "tpu", "cuda:x", "CPU", ""])
def test_unknown_names_list_the_allowed_ones(name):
    with pytest.raises(ValueError, match="allowed: auto, cpu, cuda, cuda:N"):
        resolve_device(name)


def test_autocast_is_a_no_op_on_the_cpu():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    for enabled in (True, False):
        context = autocast(torch.device("cpu"), enabled)
        assert isinstance(context, contextlib.nullcontext)
        with context:
            assert (a @ b).dtype == torch.float32
            assert not torch.is_autocast_enabled("cpu")


def test_autocast_on_cuda_is_bf16_and_can_be_disabled():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU-only build warns that CUDA autocast is unavailable
        context = autocast("cuda", enabled=True)
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16
    assert context.device == "cuda"
    assert isinstance(autocast("cuda:0", enabled=False), contextlib.nullcontext)
