"""Every model of the vocoder table behind one face: build it, make its input, synthesise.

Three sources feed the table, each with its own way to produce audio:

* the vocoder replicas of :mod:`waveflow.zoo.vocoders` (the follow-up paper's six families in its
  three sizes, the reference configurations the field cites, Vocos and BigVGAN): a random mel of the
  model's own bands, hop and sample rate;
* this paper's WaveFlow WF1-WF5 (:data:`waveflow.model.PAPER_CONFIGS`) through the fast synthesis
  path that E_gen meters, from a random 80-band mel at 22.05 kHz, hop 256;
* the Table 1 models that generate audio (:mod:`waveflow.zoo`): their own inputs. WaveGAN, SING and
  GANSynth produce a fixed clip per call whatever length is asked (the row says so); SampleRNN and
  FloWaveNet take the length asked.

A :class:`Synth` is what the protocol drives: ``inputs(batch, seconds)`` then ``run(*inputs)`` giving
``(batch, samples)`` audio; the protocol divides by the samples actually produced. Every model has
random weights: the cost of a forward pass does not depend on their values, and no trained weights
ship with the project.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from ..audio import HOP_LENGTH, SAMPLE_RATE
from ..model import PAPER, FastSynthesizer, WaveFlow
from ..zoo import build as build_zoo
from ..zoo import get_spec as zoo_spec
from ..zoo.vocoders.registry import REFERENCE_MODEL, VOCODERS, build_vocoder
from .zoo_count import GENERATOR_PART
from .zoo_measure import VARIABLE_LENGTH

#: said wherever a number of the table appears
RANDOM_WEIGHTS_NOTE = "random weights (cost does not depend on their values; no trained weights are shipped)"

#: the Table 1 models in table order (all five generate audio)
TABLE1_MODELS = ("samplernn", "sing", "wavegan", "gansynth", "flowavenet")


@dataclass
class Synth:
    """A built model ready to synthesise: ``run(*inputs(batch, seconds))`` gives ``(batch, samples)``."""

    module: nn.Module
    sample_rate: int
    inputs: Callable[[int, float], tuple[Tensor, ...]]
    run: Callable[..., Tensor]


@dataclass(frozen=True)
class Candidate:
    """One row of the table before it is measured: what it is and how to build it.

    ``params`` is the generator's parameter count as built here; ``official_params`` the official
    implementation's (equal by test for the vocoder replicas); ``paper_params_m`` the paper's
    printed figure in millions (``None`` where none is printed); ``steps`` the network evaluations
    per synthesis (diffusion steps, 1 otherwise); ``length`` how the clip length is set.
    """

    name: str
    family: str
    group: str
    sample_rate: int
    params: int
    official_params: int | None
    paper_params_m: float | None
    steps: int
    length: str
    load: Callable[[torch.device], Synth]
    notes: str = ""


# ----------------------------------------------------------------------------------------------
# the vocoder replicas
def _vocoder(name: str) -> Candidate:
    spec = VOCODERS[name]
    meta = build_vocoder(name, "meta")

    def load(device: torch.device) -> Synth:
        model = build_vocoder(name, device)
        if hasattr(model, "remove_weight_norm"):  # folded before synthesis, as HiFi-GAN's and BigVGAN's scripts do
            model.remove_weight_norm()
        model.requires_grad_(False)

        def inputs(batch: int, seconds: float) -> tuple[Tensor, ...]:
            return (model.make_mel(batch, seconds, device=device),)

        return Synth(model, model.sample_rate, inputs, model)

    return Candidate(
        name=name,
        family=spec.family,
        group=spec.group,
        sample_rate=meta.sample_rate,
        params=sum(p.numel() for p in meta.parameters()),
        official_params=spec.official_params,
        paper_params_m=spec.paper_params,
        steps=meta.steps,
        length=f"as asked (whole hops of {meta.hop_length})",
        load=load,
        notes=spec.notes,
    )


# ----------------------------------------------------------------------------------------------
# this paper's WaveFlow
def _waveflow(name: str) -> Candidate:
    paper = PAPER[name]
    config = paper.config

    def load(device: torch.device) -> Synth:
        with torch.device(device):
            model = WaveFlow(config)
        fast = FastSynthesizer(model.eval())

        def inputs(batch: int, seconds: float) -> tuple[Tensor, ...]:
            hops = max(1, math.ceil(seconds * SAMPLE_RATE / HOP_LENGTH))
            while (hops * HOP_LENGTH) % config.n_height:  # never: 256 is a multiple of h = 8 or 16
                hops += 1
            return (torch.randn(batch, config.n_mels, hops + 1, device=device),)

        return Synth(fast, SAMPLE_RATE, inputs, fast)

    with torch.device("meta"):
        params = sum(p.numel() for p in WaveFlow(config).parameters())
    return Candidate(
        name=name,
        family="WaveFlow",
        group="this paper",
        sample_rate=SAMPLE_RATE,
        params=params,
        official_params=None,
        paper_params_m=paper.paper_params_millions,
        steps=1,
        length=f"as asked (whole hops of {HOP_LENGTH})",
        load=load,
        notes=f"{paper.label}, the fast synthesis path of E_gen (fp32)",
    )


# ----------------------------------------------------------------------------------------------
# Table 1's models
def _table1(name: str) -> Candidate:
    spec = zoo_spec(name)
    part = GENERATOR_PART[name]

    def load(device: torch.device) -> Synth:
        model = build_zoo(name, device=device).eval().requires_grad_(False)
        unit = VARIABLE_LENGTH.get(name)

        def length(seconds: float) -> int:
            assert unit is not None
            return max(1, math.ceil(seconds * spec.sample_rate / unit)) * unit

        if name == "samplernn":

            def inputs(batch: int, seconds: float) -> tuple[Tensor, ...]:
                return (torch.tensor([batch, length(seconds)]),)

            def run(shape: Tensor) -> Tensor:
                return model.generate(int(shape[0]), int(shape[1]), device=device)

            return Synth(model, spec.sample_rate, inputs, run)
        if name == "flowavenet":

            def inputs(batch: int, seconds: float) -> tuple[Tensor, ...]:
                return model.make_inputs(batch, device, n_frames=length(seconds) // model.config.hop)

        else:

            def inputs(batch: int, seconds: float) -> tuple[Tensor, ...]:
                return model.make_inputs(batch, device)

        return Synth(model, spec.sample_rate, inputs, model)

    fixed = name not in VARIABLE_LENGTH
    return Candidate(
        name=name,
        family=spec.title.split(" (")[0],
        group="Table 1",
        sample_rate=spec.sample_rate,
        params=spec.params[part],
        official_params=spec.params[part],
        paper_params_m=None,
        steps=1,
        length=f"fixed {spec.audio_seconds_per_forward:.4g} s per call" if fixed else "as asked",
        load=load,
        notes=spec.title + ("; unconditional: its own latent input" if name != "flowavenet" else ""),
    )


# ----------------------------------------------------------------------------------------------
def candidate_names() -> tuple[str, ...]:
    """Every model the table knows, in table order: WaveFlow WF1-WF5, Table 1's, then the vocoders."""
    return (*PAPER, *TABLE1_MODELS, *VOCODERS)


def canonical_name(name: str) -> str:
    """``name`` as the table spells it (WF names upper case, the others lower case); ``ValueError`` naming
    every known model otherwise. Nothing is built."""
    key = name.strip()
    for spelled in (key.upper(), key.lower()):
        if spelled in PAPER or spelled in TABLE1_MODELS or spelled in VOCODERS:
            return spelled
    raise ValueError(f"--models: unknown model {name!r}; expected any of {', '.join(candidate_names())}")


def get_candidate(name: str) -> Candidate:
    """The candidate ``name`` (case-insensitive; see :func:`canonical_name`)."""
    key = canonical_name(name)
    if key in PAPER:
        return _waveflow(key)
    return _table1(key) if key in TABLE1_MODELS else _vocoder(key)


def catalogue(names: Iterable[str]) -> pd.DataFrame:
    """What each model is, before anything is measured: sizes (built here, official, printed), the
    network evaluations per synthesis, and how its clip length is set."""
    rows = []
    for c in map(get_candidate, names):
        rows.append({
            "model": c.name, "family": c.family, "group": c.group, "params": c.params,
            "official_params": c.official_params, "paper_params_m": c.paper_params_m, "steps": c.steps,
            "sample_rate": c.sample_rate, "length": c.length, "notes": c.notes,
        })
    return pd.DataFrame(rows)


__all__ = [
    "RANDOM_WEIGHTS_NOTE",
    "REFERENCE_MODEL",
    "TABLE1_MODELS",
    "Candidate",
    "Synth",
    "candidate_names",
    "canonical_name",
    "catalogue",
    "get_candidate",
]
