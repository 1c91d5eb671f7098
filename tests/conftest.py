"""Shared fixtures: tiny seeded models and the bundled data."""

from __future__ import annotations

import pytest
import torch

from waveflow import WaveFlow, WaveFlowConfig


def pytest_collection_modifyitems(config, items):
    """Skip ``requires_gpu`` tests on machines without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "requires_gpu" in item.keywords:
            item.add_marker(skip)


def randomise_outputs(model: WaveFlow, std: float = 0.1, seed: int = 0) -> WaveFlow:
    """Give the zero-initialised output convs random weights.

    At initialisation every flow is the identity, so invertibility, log-det and causality tests
    would pass trivially; with random output convs every coupling really transforms its rows.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for flow in model.flows:
            flow.out.weight.copy_(torch.randn(flow.out.weight.shape, generator=g) * std)
            flow.out.bias.copy_(torch.randn(flow.out.bias.shape, generator=g) * std)
    return model


def tiny_config(h: int = 8, r: int = 8, **kw) -> WaveFlowConfig:
    """A small config with the real structure (8 flows, 8 layers, real dilation schedule)."""
    return WaveFlowConfig(n_height=h, res_channels=r, **kw)


@pytest.fixture
def tiny_model() -> WaveFlow:
    torch.manual_seed(0)
    return randomise_outputs(WaveFlow(tiny_config(h=8, r=8)))


@pytest.fixture
def saved_tables(monkeypatch, tmp_path):
    """``saved_tables(module)``: the tables ``module.save_table`` writes, kept in a dict by name instead."""
    written: dict = {}

    def capture(module) -> dict:
        def save(table, name: str):
            written[name] = table
            return tmp_path / f"{name}.csv"

        monkeypatch.setattr(module, "save_table", save)
        return written

    return capture


@pytest.fixture(scope="module")
def one_thread():
    """Tiny CPU forwards are fastest on one thread, and do not stall when the machine is busy: the
    replica tests' modules use it (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
