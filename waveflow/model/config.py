"""Configuration of a WaveFlow model and the five configurations measured in the paper.

The dataclass fields are exactly the constructor arguments of :class:`waveflow.WaveFlow`, and a
checkpoint stores ``asdict(config)`` so that a model can always be rebuilt from its file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# Height dilation schedules of the official WaveFlow code (Parakeet). The height receptive field
# of the 8-layer coupling network, (kernel - 1) * sum(d_h) + 1, must cover the h - 1 rows it sees.
HEIGHT_DILATIONS: dict[int, tuple[int, ...]] = {
    8: (1, 1, 1, 1, 1, 1, 1, 1),
    16: (1, 1, 1, 1, 1, 1, 1, 1),
    32: (1, 2, 4, 1, 2, 4, 1, 2),
    64: (1, 2, 4, 8, 16, 1, 2, 4),
    128: (1, 2, 4, 8, 16, 32, 64, 1),
}

PERMUTATIONS = ("reverse", "bipartite")


def from_dict_checked(cls: type, data: dict[str, Any]) -> Any:
    """``cls(**data)`` for a dataclass, naming unknown keys (e.g. from a newer checkpoint) in the error."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; expected a subset of {sorted(known)}")
    return cls(**data)


@dataclass(frozen=True)
class WaveFlowConfig:
    """Hyper-parameters of a WaveFlow model (Ping et al., ICML 2020).

    Args:
        n_flows: number of affine coupling flows (8 in the paper).
        n_layers: gated residual layers in each flow's coupling network (8).
        n_height: squeezed height h; the audio of length T becomes an h x T/h matrix.
        res_channels: residual channels r (also the gate half and the skip channels).
        n_mels: mel bins of the conditioning spectrogram (80).
        kernel_size: square kernel of the dilated convolutions (3).
        height_dilations: dilation along height per layer; ``None`` takes the schedule of the
            official code for ``n_height`` (see ``HEIGHT_DILATIONS``).
        width_dilations: dilation along width per layer; ``None`` gives 1, 2, 4, ..., 2**(n_layers-1).
        permutation: height permutation applied after each flow. ``"reverse"`` reverses all rows
            after every flow; ``"bipartite"`` reverses all rows after the first half of the flows
            and each half of the rows separately after the second half (the paper's strategy for h=16).
        sigma: standard deviation of the Gaussian prior on z used in the likelihood.
        upsample_scales: time strides of the two transposed convolutions of the mel upsampler;
            their product must equal ``hop_length``.
        hop_length: audio samples per mel frame (256).
        leaky_slope: negative slope of the LeakyReLU after each upsampling layer (0.4).
    """

    n_flows: int = 8
    n_layers: int = 8
    n_height: int = 16
    res_channels: int = 64
    n_mels: int = 80
    kernel_size: int = 3
    height_dilations: tuple[int, ...] | None = None
    width_dilations: tuple[int, ...] | None = None
    permutation: str = "bipartite"
    sigma: float = 1.0
    upsample_scales: tuple[int, ...] = (16, 16)
    hop_length: int = 256
    leaky_slope: float = 0.4

    def __post_init__(self) -> None:
        for name in ("n_flows", "n_layers", "n_height", "res_channels", "n_mels", "kernel_size", "hop_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"WaveFlowConfig.{name}: expected a positive integer, got {value!r}")
        if self.n_height < 2:
            raise ValueError(f"WaveFlowConfig.n_height: expected h >= 2, got {self.n_height}")
        if self.height_dilations is None and self.n_height not in HEIGHT_DILATIONS:
            raise ValueError(
                f"WaveFlowConfig.n_height: h={self.n_height} is not supported; expected one of "
                f"{sorted(HEIGHT_DILATIONS)} (or pass height_dilations explicitly)"
            )
        if (
            self.height_dilations is None
            and self.n_height in HEIGHT_DILATIONS
            and self.n_layers > len(HEIGHT_DILATIONS[self.n_height])
        ):
            raise ValueError(
                f"WaveFlowConfig.n_layers: {self.n_layers} layers exceed the built-in height-dilation schedule "
                f"for h={self.n_height} ({len(HEIGHT_DILATIONS[self.n_height])} layers); "
                "expected height_dilations explicitly"
            )
        if self.kernel_size % 2 != 1:
            raise ValueError(f"WaveFlowConfig.kernel_size: expected an odd kernel, got {self.kernel_size}")
        if self.permutation not in PERMUTATIONS:
            raise ValueError(f"WaveFlowConfig.permutation: expected one of {PERMUTATIONS}, got {self.permutation!r}")
        if self.permutation == "bipartite" and self.n_height % 2:
            raise ValueError(f"WaveFlowConfig.permutation: 'bipartite' needs an even h, got h={self.n_height}")
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"WaveFlowConfig.sigma: expected a finite positive number, got {self.sigma!r}")
        # Normalise list inputs (e.g. from JSON checkpoints) to tuples so configs compare equal.
        for name in ("height_dilations", "width_dilations", "upsample_scales"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
        for name in ("height_dilations", "width_dilations"):
            value = getattr(self, name)
            if value is not None and (len(value) != self.n_layers or min(value) < 1):
                raise ValueError(
                    f"WaveFlowConfig.{name}: expected {self.n_layers} positive dilations (one per layer), got {value}"
                )
        if math.prod(self.upsample_scales) != self.hop_length:
            raise ValueError(
                "WaveFlowConfig.upsample_scales: expected prod(upsample_scales) == hop_length, "
                f"but found {math.prod(self.upsample_scales)} != {self.hop_length}"
            )

    @property
    def dilations_h(self) -> tuple[int, ...]:
        """Height dilation per layer, resolved from ``n_height`` when not given (the schedule's first
        ``n_layers`` entries)."""
        return self.height_dilations or HEIGHT_DILATIONS[self.n_height][: self.n_layers]

    @property
    def dilations_w(self) -> tuple[int, ...]:
        """Width dilation per layer, 2**i when not given."""
        return self.width_dilations or tuple(2**i for i in range(self.n_layers))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (lists instead of tuples) for JSON and checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WaveFlowConfig:
        """Rebuild a config from :meth:`to_dict`, rejecting unknown keys by name."""
        return from_dict_checked(cls, data)

    def replace(self, **changes: Any) -> WaveFlowConfig:
        """Copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class PaperConfig:
    """One row of the paper's Table 2: the model config and the numbers the paper prints."""

    name: str
    config: WaveFlowConfig
    paper_params_millions: float  # as printed (truncated to two decimals)
    label: str = field(default="")


def _paper(name: str, h: int, r: int, printed: float) -> PaperConfig:
    # h=8 reverses every flow; h=16 uses the bipartite strategy (b) reported for h=16 in WaveFlow.
    perm = "reverse" if h == 8 else "bipartite"
    cfg = WaveFlowConfig(n_height=h, res_channels=r, permutation=perm)
    return PaperConfig(name=name, config=cfg, paper_params_millions=printed, label=f"WaveFlow (h={h}, r={r})")


PAPER: dict[str, PaperConfig] = {
    p.name: p
    for p in (
        _paper("WF1", 8, 64, 5.91),
        _paper("WF2", 16, 64, 5.91),
        _paper("WF3", 16, 96, 12.78),
        _paper("WF4", 16, 128, 22.25),
        _paper("WF5", 16, 256, 86.18),
    )
}

#: The five configurations of the paper's Table 2, by name ("WF1" ... "WF5").
PAPER_CONFIGS: dict[str, WaveFlowConfig] = {name: p.config for name, p in PAPER.items()}


def get_config(name: str) -> WaveFlowConfig:
    """Look up a paper config by name, case-insensitive ("wf3" works)."""
    key = name.strip().upper()
    if key not in PAPER_CONFIGS:
        raise ValueError(f"config: unknown name {name!r}; expected one of {sorted(PAPER_CONFIGS)}")
    return PAPER_CONFIGS[key]
