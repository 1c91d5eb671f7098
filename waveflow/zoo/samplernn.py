"""SampleRNN (Mehri et al., ICLR 2017), the official 3-tier "BEST_3TIER" configuration.

An architecture replica for compute and energy measurement: it has the official tiers,
custom GRU, weight normalisation, loss and truncated-BPTT step, but it is **not** a trained
generator (its output is noise).

Source: ``soroushmehr/sampleRNN_ICLR2017`` (Theano/Lasagne): ``models/three_tier/three_tier.py``
(``big_frame_level_rnn`` :258-330, ``frame_level_rnn`` :332-403, ``sample_level_predictor``
:405-466, ``train_fn`` :585-813, generation loop), ``lib/ops.py`` (weight-normed ``Linear``
:32-107, ``__GRUStep`` :308-372). README command ``--exp BEST_3TIER``: seq_len 512, big frame
8, frame 2, embedding 256, dim 1024, one GRU per tier, 256 linear quantisation levels,
batch 128, weight norm, learned h0; 16 kHz audio.

Architecture (every ``Linear`` is weight-normalised: direction V plus one gain per output
unit; the embedding is not):

* top tier, every 8 samples: the previous 8 samples rescaled to [-2, 2] -> GRU(8 -> 1024) ->
  Linear(1024 -> 4 x 1024): one conditioning vector per middle-tier frame;
* middle tier, every 2 samples: Linear(2 -> 1024) of the previous 2 samples + the top-tier
  vector -> GRU(1024 -> 1024) -> Linear(1024 -> 2 x 1024): one vector per sample;
* sample MLP, every sample: Embedding(256, 256) of the previous 2 samples (512 features) ->
  Linear(512 -> 1024, no bias) + the middle-tier vector -> Linear(1024 -> 1024) -> ReLU ->
  Linear(1024 -> 1024) -> ReLU -> Linear(1024 -> 256) -> softmax over 256 levels.

The GRU is the official one, not ``nn.GRU``: an input projection in -> 3H with one bias, a
recurrent gate projection H -> 2H and a candidate projection H -> H applied to reset * h,
both without bias; h' = z * candidate + (1 - z) * h. Each GRU(in -> H) therefore has
(3H in + 3H + 3H) + (2H^2 + 2H) + (H^2 + H) parameters (gains included).

Parameters: top GRU 3,179,520 + h0 1,024 + top output 4,202,496 + middle input 4,096 + middle
GRU 6,300,672 + h0 1,024 + middle output 2,101,248 + embedding 65,536 + MLP 525,312 +
1,050,624 + 1,050,624 + 262,656 = **18,744,832 trained**. The top tier's ``IndependentPreds``
head (Linear(1024 -> 256 x 8), 2,101,248) exists in the code but ``train_fn`` only gives it a
zero gradient (its loss is used by ``ip_train_fn``, which the main loop never calls), so it
is left out by default; ``SampleRNNConfig(independent_preds=True)`` adds it (20,846,080).

MACs per sample (the GRUs are written as explicit matrix products, so ``FlopCounterMode``
sees them on every device; on meta they run as an equal-cost time-batched surrogate, see
:meth:`GRU._meta_forward`): top tier (3,170,304 + 4,194,304) / 8 = 0.92 M, middle tier
(2,048 + 6,291,456 + 2,097,152) / 2 = 4.20 M, MLP 2.88 M: **8.00 M per sample**, 128 G per
second of 16 kHz audio.

Inference is autoregressive, one sample per sequential step. One ``forward`` call generates
one top-tier period, 8 samples (1 top step, 4 middle steps, 8 MLP steps and samplings), from
the previous 8 samples and the two hidden states; the cost of a second of audio is exactly
the counted cost of that call x 16,000 / 8 (per-sample cost x samples), which is how
:mod:`waveflow.zoo.cost` reports it. :meth:`SampleRNN.generate` loops it.

One training step (``train_fn``): forward and backward of 128 sequences x (512 + 8) samples,
the first 8 being overlap with the previous chunk so every target has its context;
cross-entropy over 128 x 512 targets; gradients clipped elementwise to [-1, 1]; Adam(1e-3).
The hidden states are carried (detached) across the 250 chunks of a batch of 8-s sequences
and reset to the learned h0 at each new batch (truncated BPTT).

Decisions on the uncertain points (``waveflow/zoo/REFERENCES.md``):

* Variant: the 3-tier model (the README's figure, and the best model on two of the three
  datasets); the 2-tier model is not built.
* No iteration count is published: ``reported_steps`` is left unset and the registry
  reports the seed paper's 168 h (one week on a TITAN X, wall clock), while noting that the
  code stops after 72 h of pure ``train_fn`` time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Device, ZooModel, check_batch, count_parameters, gumbel_sample, scale_width


@dataclass(frozen=True)
class SampleRNNConfig:
    """``BEST_3TIER`` hyper-parameters of ``three_tier.py``."""

    big_frame_size: int = 8
    frame_size: int = 2
    dim: int = 1024
    emb_size: int = 256
    q_levels: int = 256
    seq_len: int = 512  # samples per truncated-BPTT chunk
    sequence_samples: int = 128_000  # 8-s training sequences
    batch_size: int = 128
    lr: float = 1e-3
    grad_clip: float = 1.0  # elementwise
    independent_preds: bool = False
    sample_rate: int = 16_000

    def scaled(self, width_scale: float) -> SampleRNNConfig:
        return replace(self, dim=scale_width(self.dim, width_scale), emb_size=scale_width(self.emb_size, width_scale))

    @classmethod
    def tiny(cls) -> SampleRNNConfig:
        """dim 64, embedding 16, batch 2, 64-sample chunks."""
        return replace(cls().scaled(1 / 16), batch_size=2, seq_len=64)

    @property
    def chunks_per_sequence(self) -> int:
        """TBPTT chunks per 8-s sequence (250): the hidden state is reset after that many."""
        return self.sequence_samples // self.seq_len

    def check_length(self, n_samples: int) -> None:
        """Chunks and generated lengths are whole top-tier frames."""
        if n_samples < self.big_frame_size or n_samples % self.big_frame_size:
            raise ValueError(
                f"SampleRNN: length must be a positive multiple of the {self.big_frame_size}-sample "
                f"top-tier frame, got {n_samples}"
            )


class WNLinear(nn.Module):
    """Lasagne-style weight-normalised linear layer: W = g * V / ||V|| per output unit."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True) -> None:
        super().__init__()
        v = torch.empty(n_out, n_in)
        nn.init.kaiming_normal_(v)  # 'he' initialisation
        self.v = nn.Parameter(v)
        self.g = nn.Parameter(v.norm(dim=1))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def weight(self) -> Tensor:
        return self.v * (self.g / self.v.norm(dim=1)).unsqueeze(1)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight(), self.bias)


class GRU(nn.Module):
    """The official GRU (``lib/ops.py``): one input bias, bias-free recurrent projections."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.input = WNLinear(n_in, 3 * hidden)
        self.gates = WNLinear(hidden, 2 * hidden, bias=False)
        self.candidate = WNLinear(hidden, hidden, bias=False)

    def forward(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, in), h (B, H) -> outputs (B, T, H), last state (B, H)."""
        hdim = self.hidden
        projected = self.input(x)  # all steps at once, as the Theano scan does
        w_gates, w_cand = self.gates.weight().t(), self.candidate.weight().t()
        if x.device.type == "meta":
            return self._meta_forward(projected, h, w_gates, w_cand)
        outs = []
        for t in range(x.shape[1]):
            p = projected[:, t]
            gates = torch.sigmoid(torch.addmm(p[:, : 2 * hdim], h, w_gates))
            update, reset = gates[:, :hdim], gates[:, hdim:]
            cand = torch.tanh(torch.addmm(p[:, 2 * hdim :], reset * h, w_cand))
            h = update * cand + (1.0 - update) * h
            outs.append(h)
        return torch.stack(outs, dim=1), h

    def _meta_forward(self, projected: Tensor, h0: Tensor, w_gates: Tensor, w_cand: Tensor) -> tuple[Tensor, Tensor]:
        """Cost surrogate for the meta device: the recurrence as time-batched matrix products.

        Tracing 256 sequential steps and their backward on meta takes seconds. With no values
        to compute, every step's ``h_{t-1} @ U_gates`` and ``(r * h_{t-1}) @ U_cand`` are done
        for all steps at once on a stand-in for h_{t-1} that depends on the graph (step 0
        reads the real h0 separately), so the forward and backward matrix products, and hence
        the counted MACs, are exactly those of the stepwise loop. Values are meaningless.
        """
        hdim = self.hidden
        h_prev = torch.cat([h0.unsqueeze(1), torch.tanh(projected[:, :-1, :hdim])], dim=1)  # (B, T, H)
        first = torch.cat([h0 @ w_gates, (h0 * h0) @ w_cand], dim=-1).unsqueeze(1)
        rest_in = h_prev[:, 1:]
        gates_rest = rest_in @ w_gates
        reset_rest = torch.sigmoid(projected[:, 1:, hdim : 2 * hdim] + gates_rest[..., hdim:])
        rest = torch.cat([gates_rest, (reset_rest * rest_in) @ w_cand], dim=-1)
        pre = projected + torch.cat([first, rest], dim=1)
        update = torch.sigmoid(pre[..., :hdim])
        out = update * torch.tanh(pre[..., 2 * hdim :]) + (1.0 - update) * h_prev
        return out, out[:, -1]


class SampleRNN(ZooModel):
    """Three tiers: top GRU (every 8 samples), middle GRU (every 2), sample-level MLP."""

    name = "samplernn"
    sample_rate = 16_000

    def __init__(self, config: SampleRNNConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SampleRNNConfig()
        big, fs, dim = cfg.big_frame_size, cfg.frame_size, cfg.dim
        self.top_h0 = nn.Parameter(torch.zeros(dim))
        self.top_rnn = GRU(big, dim)
        self.top_out = WNLinear(dim, dim * big // fs)
        self.independent_preds = WNLinear(dim, cfg.q_levels * big) if cfg.independent_preds else None
        self.mid_h0 = nn.Parameter(torch.zeros(dim))
        self.mid_in = WNLinear(fs, dim)
        self.mid_rnn = GRU(dim, dim)
        self.mid_out = WNLinear(dim, dim * fs)
        self.embedding = nn.Embedding(cfg.q_levels, cfg.emb_size)
        self.mlp_in = WNLinear(fs * cfg.emb_size, dim, bias=False)
        self.mlp_hidden = nn.ModuleList([WNLinear(dim, dim), WNLinear(dim, dim)])
        self.mlp_out = WNLinear(dim, cfg.q_levels)
        self._state: tuple[Tensor, Tensor] | None = None
        self._chunk = 0

    # ---------------------------------------------------------------- tiers
    def _rescale(self, codes: Tensor) -> Tensor:
        """Integer levels [0, Q) -> floats in [-2, 2] (the tiers' inputs)."""
        return (codes.float() / (self.config.q_levels / 2) - 1.0) * 2.0

    def top_tier(self, samples: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(B, n x 8) codes -> conditioning (B, n x 4, dim), state."""
        b = samples.shape[0]
        frames = self._rescale(samples).view(b, -1, self.config.big_frame_size)
        out, h = self.top_rnn(frames, h)
        return self.top_out(out).view(b, -1, self.config.dim), h

    def middle_tier(self, samples: Tensor, cond: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(B, m x 2) codes + (B, m, dim) conditioning -> (B, m x 2, dim), state."""
        b = samples.shape[0]
        frames = self._rescale(samples).view(b, -1, self.config.frame_size)
        out, h = self.mid_rnn(self.mid_in(frames) + cond, h)
        return self.mid_out(out).view(b, -1, self.config.dim), h

    def sample_mlp(self, prev: Tensor, cond: Tensor) -> Tensor:
        """(..., 2) previous codes + (..., dim) conditioning -> (..., 256) logits."""
        x = self.mlp_in(self.embedding(prev).flatten(-2)) + cond  # no ReLU here (official)
        for layer in self.mlp_hidden:
            x = F.relu(layer(x))
        return self.mlp_out(x)

    def initial_state(self, batch: int) -> tuple[Tensor, Tensor]:
        """The learned h0 of both tiers, broadcast over the batch (used at every reset)."""
        return self.top_h0.expand(batch, -1), self.mid_h0.expand(batch, -1)

    # ---------------------------------------------------------------- inference
    def step(self, prev: Tensor, h_top: Tensor, h_mid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Generate the next 8 codes from the previous 8, one sample at a time."""
        cfg = self.config
        big, fs = cfg.big_frame_size, cfg.frame_size
        if prev.dim() != 2 or prev.shape[1] != big:
            raise ValueError(
                f"SampleRNN step needs the previous {big} codes, shape (batch, {big}); got {tuple(prev.shape)}"
            )
        cond_top, h_top = self.top_tier(prev, h_top)  # (B, 4, dim)
        history = list(prev.unbind(1))
        for j in range(big // fs):
            frame = torch.stack(history[-fs:], dim=1)
            cond_mid, h_mid = self.middle_tier(frame, cond_top[:, j : j + 1], h_mid)  # (B, 2, dim)
            for k in range(fs):
                logits = self.sample_mlp(torch.stack(history[-fs:], dim=1), cond_mid[:, k])
                history.append(gumbel_sample(logits))
        return torch.stack(history[big:], dim=1), h_top, h_mid

    def make_inputs(self, batch: int = 1, device: Device = None) -> tuple[Tensor, ...]:
        """Silence (level 128) as the previous frame and the learned h0, as the official sampler."""
        check_batch(batch, self.name)
        dev = self._device(device)
        prev = torch.full((batch, self.config.big_frame_size), self.config.q_levels // 2, device=dev)
        h_top, h_mid = (h.detach().clone().to(dev) for h in self.initial_state(batch))
        return prev, h_top, h_mid

    def decode(self, codes: Tensor) -> Tensor:
        """Linear de-quantisation of levels [0, Q) to [-1, 1)."""
        return codes.float() / (self.config.q_levels / 2) - 1.0

    def forward(self, prev: Tensor, h_top: Tensor, h_mid: Tensor) -> Tensor:
        """Inference unit: 8 new samples (0.5 ms at 16 kHz), (B, 8) in [-1, 1)."""
        codes, _, _ = self.step(prev, h_top, h_mid)
        return self.decode(codes)

    @torch.no_grad()
    def generate(self, batch: int, n_samples: int, device: Device = None) -> Tensor:
        """Autoregressive generation of ``n_samples`` (a multiple of 8) per sequence."""
        self.config.check_length(n_samples)
        prev, h_top, h_mid = self.make_inputs(batch, device)
        out = []
        for _ in range(n_samples // self.config.big_frame_size):
            prev, h_top, h_mid = self.step(prev, h_top, h_mid)
            out.append(prev)
        return self.decode(torch.cat(out, dim=1))

    # ---------------------------------------------------------------- training
    def make_batch(
        self, batch: int | None = None, device: Device = None, stage: str | None = None, seq_len: int | None = None
    ) -> tuple[Tensor, ...]:
        """One TBPTT chunk: codes of shape (B, seq_len + 8), the first 8 overlapping the previous chunk."""
        self._stage(stage)
        cfg = self.config
        b = check_batch(cfg.batch_size if batch is None else batch, self.name)
        n = cfg.seq_len if seq_len is None else seq_len
        cfg.check_length(n)
        return (torch.randint(0, cfg.q_levels, (b, n + cfg.big_frame_size), device=self._device(device)),)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=self.config.lr)}

    def loss(self, sequences: Tensor, h_top: Tensor, h_mid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Cross-entropy in bits per sample of one chunk, and the new states (``three_tier.py``)."""
        cfg = self.config
        big, fs = cfg.big_frame_size, cfg.frame_size
        if sequences.dim() != 2:
            raise ValueError(f"SampleRNN needs codes of shape (batch, seq_len + {big}); got {tuple(sequences.shape)}")
        cfg.check_length(sequences.shape[1] - big)
        cond_top, h_top = self.top_tier(sequences[:, :-big], h_top)
        cond_mid, h_mid = self.middle_tier(sequences[:, big - fs : -fs], cond_top, h_mid)
        prev = sequences[:, big - fs : -1].unfold(1, fs, 1)  # (B, seq_len, 2)
        logits = self.sample_mlp(prev, cond_mid)
        nats = F.cross_entropy(logits.reshape(-1, cfg.q_levels), sequences[:, big:].reshape(-1))
        return nats * 1.4426950408889634, h_top, h_mid

    def training_step(
        self, sequences: Tensor, stage: str | None = None, reset: bool | None = None
    ) -> dict[str, Tensor]:
        """One ``train_fn`` call; ``reset=None`` resets every ``chunks_per_sequence`` chunks."""
        self._stage(stage)
        cfg = self.config
        if reset is None:
            reset = self._state is None or self._chunk % cfg.chunks_per_sequence == 0
        if reset or self._state is None or self._state[0].shape[0] != sequences.shape[0]:
            h_top, h_mid = self.initial_state(sequences.shape[0])
            self._chunk = 0
        else:
            h_top, h_mid = self._state
        opt = self.optimizers()["model"]
        loss, h_top, h_mid = self.loss(sequences, h_top, h_mid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_value_(self.parameters(), cfg.grad_clip)
        opt.step()
        self._state = (h_top.detach(), h_mid.detach())
        self._chunk += 1
        return {"loss": loss.detach()}

    def parameter_counts(self) -> dict[str, int]:
        total = count_parameters(self.parameters())
        extra = 0 if self.independent_preds is None else count_parameters(self.independent_preds.parameters())
        return {"trained": total - extra, "total": total}
