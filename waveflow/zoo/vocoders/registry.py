"""Every vocoder configuration of the table, by name, from the modules that build them.

Each family module holds a ``VARIANTS`` tuple of :class:`~waveflow.zoo.vocoders.base.VocoderSpec`;
this module gathers them in one order (the follow-up paper's six families, then today's vocoders)
and builds a model by name with a one-line error for an unknown one.
"""

from __future__ import annotations

import importlib

import torch

from .base import Device, Vocoder, VocoderSpec

#: family modules, in table order
FAMILY_MODULES = ("hifigan", "melgan", "waveglow", "flow_waveflow", "diffwave", "wavegrad", "vocos", "bigvgan")

#: the model every relative energy is taken against (DCASE-style energy-aware ranking)
REFERENCE_MODEL = "hifigan-v1"


def _gather() -> dict[str, VocoderSpec]:
    specs: dict[str, VocoderSpec] = {}
    for module in FAMILY_MODULES:
        for spec in importlib.import_module(f"{__package__}.{module}").VARIANTS:
            if spec.name in specs:
                raise RuntimeError(f"vocoder name {spec.name!r} is defined twice")
            specs[spec.name] = spec
    return specs


VOCODERS: dict[str, VocoderSpec] = _gather()


def get_vocoder_spec(name: str) -> VocoderSpec:
    """The spec of ``name`` (case-insensitive); ``ValueError`` naming the known ones otherwise."""
    key = name.strip().lower()
    if key not in VOCODERS:
        raise ValueError(f"vocoder: unknown model {name!r}; expected one of {', '.join(VOCODERS)}")
    return VOCODERS[key]


def build_vocoder(name: str, device: Device = None) -> Vocoder:
    """A randomly initialised ``name`` on ``device`` (``"meta"``: shapes only, for counting)."""
    spec = get_vocoder_spec(name)
    with torch.device(device if device is not None else "cpu"):
        return spec.build().eval()
