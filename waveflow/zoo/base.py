"""The common face of the five Table 1 replicas, and the few helpers they share.

Every replica is a :class:`ZooModel`: an ``nn.Module`` that owns all the networks of one
published system (generator and discriminator, or autoencoder and sequence generator, ...) and
exposes the same five entry points, so that the registry, the cost counter and an energy
harness can drive any of them without knowing which one it is:

* ``make_inputs(batch, device)``: inputs of one inference call (``model(*inputs)``);
* ``forward(*inputs)``: inference, returning audio of shape ``(batch, samples)``;
* ``make_batch(batch, device, stage)``: random stand-in training data at the paper's shapes;
* ``training_step(*batch, stage=...)``: one optimiser step exactly as the original code
  defines a step (several network updates for a GAN critic schedule, several truncated-BPTT
  updates for SING's sequence stage);
* ``parameter_counts()``: the parameter totals derived from the official code
  (``waveflow/zoo/REFERENCES.md``).

The replicas are architecture replicas for compute and energy measurement; none of them is a
trained generator, and their outputs are noise.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterable

import torch
from torch import Tensor, nn

Device = torch.device | str | None


def check_batch(batch: int, what: str) -> int:
    """Reject a batch size that cannot produce a forward pass (0, negative or not an int)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"{what}: batch must be a positive int, got {batch!r}")
    return batch


def scale_width(width: int, width_scale: float) -> int:
    """Channels of a layer at ``width_scale`` (at least 1), for tiny and scaled variants."""
    if width_scale <= 0:
        raise ValueError(f"width_scale must be > 0, got {width_scale}")
    return max(1, int(round(width * width_scale)))


def count_parameters(params: Iterable[nn.Parameter]) -> int:
    """Number of scalars in ``params`` (works on the meta device: shapes only)."""
    return sum(p.numel() for p in params)


class ZooModel(nn.Module):
    """Base class of the replicas; see the module docstring for the contract.

    Subclasses set ``name`` and ``sample_rate`` and implement the abstract methods. Optimisers
    are created lazily by :meth:`optimizers` on the first training step, after the model has
    been moved to its device, and are kept outside the module's state (they are not modules).
    """

    name: str = ""
    sample_rate: int = 16_000
    training_stages: tuple[str, ...] = ("train",)

    def __init__(self) -> None:
        super().__init__()
        self._optimizers: dict[str, torch.optim.Optimizer] | None = None

    @property
    def device(self) -> torch.device:
        """Device of the first parameter (every replica has parameters)."""
        return next(self.parameters()).device

    def _device(self, device: Device) -> torch.device:
        return self.device if device is None else torch.device(device)

    def _stage(self, stage: str | None) -> str:
        """The default stage is the last one (the step that runs longest at the end of training)."""
        if stage is None:
            return self.training_stages[-1]
        if stage not in self.training_stages:
            raise ValueError(f"{self.name}: unknown training stage {stage!r}; known: {self.training_stages}")
        return stage

    @abstractmethod
    def make_inputs(self, batch: int = 1, device: Device = None) -> tuple[Tensor, ...]:
        """Inputs of one inference call ``model(*inputs)``."""

    @abstractmethod
    def make_batch(
        self, batch: int | None = None, device: Device = None, stage: str | None = None
    ) -> tuple[Tensor, ...]:
        """Random training data with the paper's shapes (``batch=None``: the paper's batch)."""

    @abstractmethod
    def training_step(self, *batch: Tensor, stage: str | None = None) -> dict[str, Tensor]:
        """One training step as the original code defines it; returns detached losses."""

    @abstractmethod
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The original optimisers, keyed by what they update."""

    @abstractmethod
    def parameter_counts(self) -> dict[str, int]:
        """Parameter totals by part, as ``waveflow/zoo/REFERENCES.md`` derives them from the official code."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers, created on first use."""
        if self._optimizers is None:
            self._optimizers = self.configure_optimizers()
        return self._optimizers


def wgan_gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, target: float = 1.0) -> Tensor:
    """WGAN-GP term E[(||grad_x D(x_hat)|| - target)^2] on random interpolates (Gulrajani et al.).

    The gradient is taken with ``create_graph=True`` so that the critic's backward pass also
    differentiates through it (the double backprop that makes a WGAN-GP critic step expensive).
    The critic may return a tuple; its first element is the score.
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, device=real.device, dtype=real.dtype)
    leaf = (real + alpha * (fake - real)).requires_grad_(True)
    # Differentiate with respect to a non-leaf alias: FlopCounterMode's module tracker cannot
    # run autograd.grad on a leaf input, and the alias costs nothing.
    interpolates = leaf.view_as(leaf)
    score = critic(interpolates)
    score = score[0] if isinstance(score, tuple) else score
    (grad,) = torch.autograd.grad(score.sum(), interpolates, create_graph=True)
    norm = torch.sqrt(grad.flatten(1).pow(2).sum(dim=1) + 1e-12)
    return (norm - target).pow(2).mean()


def gumbel_sample(logits: Tensor) -> Tensor:
    """Sample a category per row with the Gumbel-max trick (same law as softmax sampling).

    Used instead of ``torch.multinomial`` because it is a handful of elementwise ops that also
    run on the meta device, where costs are counted.
    """
    u = torch.rand_like(logits).clamp_(1e-10, 1.0 - 1e-7)
    return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)


def hann_window(length: int, device: Device = None, squared: bool = False) -> Tensor:
    """Periodic Hann window, optionally squared (SING smooths its outer convolutions with it)."""
    n = torch.arange(length, dtype=torch.float32, device=device)
    w = 0.5 - 0.5 * torch.cos(2.0 * math.pi * n / length)
    return w * w if squared else w
