"""Checkpoints written before the sub-package layout still load, and the model they hold computes
exactly what it computed then (the fixture and its outputs were written by commit b976150)."""

from __future__ import annotations

from pathlib import Path

import torch

from waveflow.model import load_checkpoint

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
