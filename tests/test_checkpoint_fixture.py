"""Checkpoints written before the sub-package layout still load, and the model they hold computes
exactly what it computed then (the fixture and its outputs were written by commit b976150).

The fixture is format 1: its NumPy RNG state is an ndarray, so it loads through the safe loader
only with the explicit NumPy allow-list, never with ``weights_only=False``."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from waveflow.model import load_checkpoint, read_checkpoint, set_rng_state
from waveflow.model.checkpoint import V1_NUMPY_GLOBALS

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_pre_layout_checkpoint_loads_and_reproduces_its_outputs():
    model, info = load_checkpoint(FIXTURES / "checkpoint_v1_pre_layout.pt")
    expected = torch.load(FIXTURES / "checkpoint_v1_pre_layout_expected.pt", weights_only=True)
    assert info["step"] == 7
    assert (model.config.n_height, model.config.res_channels, model.config.n_flows) == (8, 4, 2)
    audio = model.infer(expected["mel"], z=expected["z"])
    torch.testing.assert_close(audio, expected["audio"], rtol=0, atol=1e-6)
    ll = model.log_likelihood(expected["x"], expected["mel"]).detach()
    torch.testing.assert_close(ll, expected["log_likelihood"], rtol=0, atol=1e-6)


def test_pre_layout_checkpoint_needs_only_the_numpy_allow_list_and_its_rng_restores():
    path = FIXTURES / "checkpoint_v1_pre_layout.pt"
    # A genuine format-1 file: the bare safe loader refuses its NumPy RNG state ...
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(path, weights_only=True)
    # ... and the explicit allow-list is all it takes (still weights_only=True).
    with torch.serialization.safe_globals(V1_NUMPY_GLOBALS):
        raw = torch.load(path, weights_only=True)
    payload = read_checkpoint(path)
    assert payload["format_version"] == raw["format_version"] == 1

    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    set_rng_state(payload["rng"])
    assert random.getstate() == raw["rng"]["python"]
    name, key, pos, has_gauss, gauss = np.random.get_state()
    v1_name, v1_key, v1_pos, v1_has_gauss, v1_gauss = raw["rng"]["numpy"]
    assert (name, pos, has_gauss, gauss) == (v1_name, v1_pos, v1_has_gauss, v1_gauss)
    assert np.array_equal(key, v1_key) and key.dtype == v1_key.dtype
    assert torch.equal(torch.get_rng_state(), raw["rng"]["torch"])
    # The restored generators draw what the saved run would have drawn next.
    draws = (random.random(), np.random.rand(), torch.rand(2))
    (
        random.setstate(raw["rng"]["python"]),
        np.random.set_state(raw["rng"]["numpy"]),
        torch.set_rng_state(raw["rng"]["torch"]),
    )
    assert draws[:2] == (random.random(), np.random.rand()) and torch.equal(draws[2], torch.rand(2))
