"""SING (Défossez, Zeghidour, Usunier, Bottou & Bach, NeurIPS 2018), the L1-spectral-loss model.

An architecture replica for compute and energy measurement: it has the official networks,
losses and three training stages, but it is **not** a trained generator (its output is noise).

Source: ``facebookresearch/SING`` (PyTorch): ``sing/ae/models.py`` (``ConvolutionalDecoder``
:14-99, ``ConvolutionalEncoder`` :102-157), ``sing/ae/utils.py`` (convolutions smoothed by a
squared Hann window), ``sing/sequence/models.py`` (the LSTM ``SequenceGenerator``),
``sing/sequence/trainer.py`` (truncated BPTT), ``sing/dsp.py`` (spectral loss),
``sing/train.py`` and ``sing/parser.py`` (defaults). Configuration: the README's
``python3 -m sing.train --l1`` at the paper's batch 256.

Generation path (63,747,929 parameters):

* sequence generator: lookup tables velocity (6 x 2), instrument (1,006 x 16), pitch (121 x 8)
  and time step (265 x 4), concatenated to 30 features per step (not autoregressive) ->
  ``nn.LSTM(30 -> 1024, 3 layers)`` over 265 steps -> ``Linear(1024 -> 128)`` per step:
  21,118,976 + 131,200 + 18,136 = 21,268,312;
* decoder: Conv1d(128 -> 4096, k 9) -> ReLU -> 2 x [Conv1d(4096 -> 4096, k 1) -> ReLU] ->
  ConvTranspose1d(4096 -> 1, k 1024, stride 256, padding 768) whose weight is multiplied by a
  squared Hann window at every forward: 4,722,688 + 33,562,624 + 4,194,305 = 42,479,617;
  265 embedding frames -> (265 - 9 + 2) x 256 - 1024 = 65,024 samples (a 4-s note plus 512
  samples of padding at each end).

Pre-training only: the encoder, Conv1d(1 -> 4096, k 1024, stride 256, squared-Hann weight) ->
ReLU -> 2 x [Conv1d(4096 -> 4096, k 1) -> ReLU] -> Conv1d(4096 -> 128, k 1): 38,285,440.

MACs per forward (65,024 samples): LSTM 265 x 21.09 M = 5.59 G, output linear 34.7 M, decoder
10.91 G, total 16.54 G. The LSTM is ``nn.LSTM`` (the official module; cuDNN on a GPU), whose
fused CPU/CUDA kernels ``FlopCounterMode`` cannot see. On the meta device, where costs are
counted, :class:`CountableLSTM` runs it as explicit matrix products instead (PyTorch's own
meta decomposition is also counted, but takes seconds to trace), so the counter sees every
LSTM multiply-accumulate; the tests check it against the closed form :func:`lstm_macs`.

The three training stages (``training_stages``), each an Adam(3e-4) step on batch 256 notes:

1. ``autoencoder``: encoder + decoder forward/backward on the note padded by 2,304 samples per
   side (68,608 samples, 265 frames), L1 distance between log(1 + |STFT|^2) spectrograms
   (n_fft 1024, hop 256, Hann, not centred) of the output and the 65,024-sample target;
2. ``sequence``: the LSTM alone against encoder embeddings computed once for the train set;
   truncated BPTT of 32 steps gives ceil(265 / 32) = 9 optimiser steps per batch, MSE loss;
   ``make_batch`` supplies the precomputed embeddings, so the step has no encoder pass;
3. ``finetune``: LSTM over 265 steps (untruncated) + decoder forward/backward, spectral loss.

Decisions on the uncertain points (``waveflow/zoo/REFERENCES.md``):

* The autoencoder stage uses the spectral L1 loss, as the code does (``train.py`` passes
  ``train_loss`` to every trainer), not the waveform MSE a secondary review attributes to
  the paper. The encoder/decoder compute is the same either way; only the cheap loss differs.
* The NSynth train-split size (~231k notes) only matters for steps per epoch; the registry
  reports the seed paper's hours and leaves the step count unset.
* The per-epoch evaluation passes (LSTM + decoder on ~68k notes per stage) are not part of a
  training step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Device, ZooModel, check_batch, count_parameters, hann_window, scale_width


@dataclass(frozen=True)
class SINGConfig:
    """``sing/parser.py`` defaults with ``--l1`` and the paper's batch of 256."""

    channels: int = 4096  # ae_channels
    dimension: int = 128  # ae_dimension: embedding size
    stride: int = 256
    kernel_size: int = 1024
    context_size: int = 9
    rewrite_layers: int = 2
    hidden_size: int = 1024  # seq_hidden_size
    num_layers: int = 3
    velocity: tuple[int, int] = (6, 2)  # (cardinality, dimension)
    instrument: tuple[int, int] = (1006, 16)
    pitch: tuple[int, int] = (121, 8)
    time_dim: int = 4
    note_samples: int = 64_000  # 4 s at 16 kHz
    pad: int = 2304  # zero padding on each side of a note (decoder strip + 512)
    truncated_gradient: int = 32
    batch_size: int = 256
    lr: float = 3e-4
    stft_n_fft: int = 1024
    stft_hop: int = 256
    epsilon: float = 1.0  # log(epsilon + |STFT|^2)

    def scaled(self, width_scale: float) -> SINGConfig:
        return replace(
            self,
            channels=scale_width(self.channels, width_scale),
            hidden_size=scale_width(self.hidden_size, width_scale),
        )

    @classmethod
    def tiny(cls) -> SINGConfig:
        """4096 -> 64 channels, 1024 -> 16 LSTM units, batch 2, full note length."""
        return replace(cls().scaled(1 / 64), batch_size=2)

    @property
    def strip(self) -> int:
        """``ConvolutionalDecoder.strip``: samples the decoder loses at each end (1,792)."""
        return self.kernel_size - self.stride + (self.context_size - 1) * self.stride // 2

    def padded_length(self, note_samples: int) -> int:
        return note_samples + 2 * self.pad

    def frames(self, note_samples: int) -> int:
        """Embedding frames of a padded note: (68,608 - 1024) / 256 + 1 = 265."""
        return (self.padded_length(note_samples) - self.kernel_size) // self.stride + 1

    def wav_length(self, frames: int) -> int:
        """``ConvolutionalDecoder.wav_length``: (frames - context + 2) x stride - kernel."""
        return (frames - self.context_size + 2) * self.stride - self.kernel_size

    def check_note(self, note_samples: int) -> None:
        """A note must be a positive multiple of the hop so that output and target align."""
        if note_samples < self.stride or note_samples % self.stride:
            raise ValueError(
                f"SING: a note must be a positive multiple of the {self.stride}-sample hop, got {note_samples} samples"
            )

    @property
    def sequence_optimizer_steps(self) -> int:
        """Adam steps per batch in the sequence stage: ceil(265 / 32) = 9."""
        return math.ceil(self.length / self.truncated_gradient)

    @property
    def length(self) -> int:
        """Sequence steps of the LSTM for a full note (265)."""
        return self.frames(self.note_samples)


class WindowedConv1d(nn.Conv1d):
    """Conv1d whose weight is multiplied by a squared Hann window at every forward."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("window", hann_window(self.kernel_size[0], squared=True), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.window, self.bias)


class WindowedConvTranspose1d(nn.ConvTranspose1d):
    """ConvTranspose1d whose weight is multiplied by a squared Hann window at every forward."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("window", hann_window(self.kernel_size[0], squared=True), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose1d(
            x,
            self.weight * self.window,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )


class ConvolutionalEncoder(nn.Module):
    """Padded waveform (B, 68,608) -> embeddings (B, 128, 265)."""

    def __init__(self, cfg: SINGConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [WindowedConv1d(1, cfg.channels, cfg.kernel_size, stride=cfg.stride), nn.ReLU()]
        for _ in range(cfg.rewrite_layers):
            layers += [nn.Conv1d(cfg.channels, cfg.channels, 1), nn.ReLU()]
        layers.append(nn.Conv1d(cfg.channels, cfg.dimension, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, wav: Tensor) -> Tensor:
        return self.layers(wav.unsqueeze(1))


class ConvolutionalDecoder(nn.Module):
    """Embeddings (B, 128, F) -> waveform (B, (F - 7) x 256 - 1024)."""

    def __init__(self, cfg: SINGConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = [nn.Conv1d(cfg.dimension, cfg.channels, cfg.context_size), nn.ReLU()]
        for _ in range(cfg.rewrite_layers):
            layers += [nn.Conv1d(cfg.channels, cfg.channels, 1), nn.ReLU()]
        layers.append(
            WindowedConvTranspose1d(
                cfg.channels, 1, cfg.kernel_size, stride=cfg.stride, padding=cfg.kernel_size - cfg.stride
            )
        )
        self.layers = nn.Sequential(*layers)

    def forward(self, embeddings: Tensor) -> Tensor:
        if embeddings.shape[-1] < self.cfg.context_size:
            raise ValueError(
                f"SING decoder needs at least {self.cfg.context_size} embedding frames, got {embeddings.shape[-1]}"
            )
        return self.layers(embeddings).squeeze(1)


class CountableLSTM(nn.LSTM):
    """``nn.LSTM`` (same parameters; fused kernels on real devices) with a countable meta path.

    ``FlopCounterMode`` cannot see inside the fused LSTM kernels, and PyTorch's own per-op
    decomposition on meta takes seconds to trace for 265 steps x 3 layers. On the meta
    device, where no values exist and only shapes and costs matter, each layer therefore
    runs as time-batched matrix products, ``x @ W_ih^T`` and ``h_prev @ W_hh^T`` over all
    steps at once (step 0 apart: BPTT computes no gradient for an h0 that needs none), then
    the gate nonlinearities. These are exactly the LSTM's forward multiply-accumulates (the
    closed form :func:`lstm_macs`), and their gradients with respect to x, h_prev, W_ih and
    W_hh are exactly the matrix products of backpropagation through time, so forward +
    backward counts equal those of PyTorch's own decomposition (both checked by the tests).
    The meta path is a cost surrogate: it does not carry the recurrence, so its values would
    be wrong, but values never exist on meta. Supports the configuration used here:
    unidirectional, time-major, no projection, no dropout.
    """

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None):  # type: ignore[override]
        if x.device.type != "meta":
            return super().forward(x, hx)
        hs, cs = [], []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (
                getattr(self, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            projected = F.linear(x, w_ih, b_ih + b_hh)  # (T, B, 4H)
            h0 = projected.new_zeros(projected.shape[1], self.hidden_size) if hx is None else hx[0][layer]
            # Step 0 reads h0 (no gradient flows into it, as in BPTT); steps 1.. read a
            # stand-in for h_{t-1} that depends on the graph, so its gradient is computed.
            h_rest = torch.tanh(projected[:-1, :, : self.hidden_size])
            recurrent = torch.cat([(h0 @ w_hh.t()).unsqueeze(0), h_rest @ w_hh.t()])
            i, f, g, o = (projected + recurrent).chunk(4, dim=-1)
            c = torch.sigmoid(f) * torch.tanh(g) + torch.sigmoid(i) * torch.tanh(g)
            x = torch.sigmoid(o) * torch.tanh(c)
            hs.append(x[-1])
            cs.append(c[-1])
        return x, (torch.stack(hs), torch.stack(cs))


def lstm_macs(input_size: int, hidden_size: int, num_layers: int, steps: int, batch: int = 1) -> int:
    """Closed-form MACs of a unidirectional ``nn.LSTM`` forward: 4H (in + H) per layer and step."""
    per_step = 4 * hidden_size * (input_size + hidden_size) + (num_layers - 1) * 8 * hidden_size**2
    return per_step * steps * batch


class SequenceGenerator(nn.Module):
    """(velocity, instrument, pitch) indices -> embedding sequence (B, 128, length)."""

    def __init__(self, cfg: SINGConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.velocity = nn.Embedding(*cfg.velocity)
        self.instrument = nn.Embedding(*cfg.instrument)
        self.pitch = nn.Embedding(*cfg.pitch)
        self.time = nn.Embedding(cfg.length, cfg.time_dim)
        input_size = cfg.velocity[1] + cfg.instrument[1] + cfg.pitch[1] + cfg.time_dim
        self.lstm = CountableLSTM(input_size, cfg.hidden_size, cfg.num_layers)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.dimension)

    def forward(
        self,
        velocity: Tensor,
        instrument: Tensor,
        pitch: Tensor,
        start: int = 0,
        length: int | None = None,
        hidden: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        length = self.cfg.length - start if length is None else length
        if length < 1 or start < 0 or start + length > self.cfg.length:
            raise ValueError(f"SING: steps [{start}, {start + length}) outside the {self.cfg.length}-step sequence")
        static = torch.cat([self.velocity(velocity), self.instrument(instrument), self.pitch(pitch)], dim=-1)
        times = self.time(torch.arange(start, start + length, device=static.device))  # (L, 4)
        x = torch.cat(
            [static.unsqueeze(0).expand(length, -1, -1), times.unsqueeze(1).expand(-1, static.shape[0], -1)], dim=-1
        )  # (L, B, 30)
        out, hidden = self.lstm(x, hidden)
        return self.decoder(out).permute(1, 2, 0), hidden


class SING(ZooModel):
    """Sequence generator + decoder (generation) and the encoder used in pre-training."""

    name = "sing"
    sample_rate = 16_000
    training_stages = ("autoencoder", "sequence", "finetune")

    def __init__(self, config: SINGConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SINGConfig()
        self.sequence_generator = SequenceGenerator(cfg)
        self.decoder = ConvolutionalDecoder(cfg)
        self.encoder = ConvolutionalEncoder(cfg)
        self.register_buffer("stft_window", hann_window(cfg.stft_n_fft), persistent=False)

    # ---------------------------------------------------------------- inference
    def sample_conditioning(self, batch: int, device: Device = None) -> tuple[Tensor, Tensor, Tensor]:
        """Random (velocity, instrument, pitch) indices."""
        check_batch(batch, self.name)
        dev, cfg = self._device(device), self.config
        return tuple(
            torch.randint(0, card, (batch,), device=dev)  # type: ignore[return-value]
            for card, _ in (cfg.velocity, cfg.instrument, cfg.pitch)
        )

    def make_inputs(self, batch: int = 1, device: Device = None) -> tuple[Tensor, ...]:
        return self.sample_conditioning(batch, device)

    def forward(self, velocity: Tensor, instrument: Tensor, pitch: Tensor) -> Tensor:
        """Inference: LSTM over 265 steps + decoder: (B, 65,024) samples (4.064 s at 16 kHz)."""
        embeddings, _ = self.sequence_generator(velocity, instrument, pitch)
        return self.decoder(embeddings)

    # ---------------------------------------------------------------- training
    def spectral_loss(self, a: Tensor, b: Tensor) -> Tensor:
        """``dsp.SpectralLoss(nn.L1Loss(), epsilon=1)``: L1 between log(1 + |STFT|^2)."""
        cfg = self.config

        def logspec(x: Tensor) -> Tensor:
            s = torch.stft(x, cfg.stft_n_fft, cfg.stft_hop, window=self.stft_window, center=False, return_complex=True)
            return torch.log(cfg.epsilon + s.real.pow(2) + s.imag.pow(2))

        return F.l1_loss(logspec(a), logspec(b))

    def make_batch(
        self, batch: int | None = None, device: Device = None, stage: str | None = None, note_samples: int | None = None
    ) -> tuple[Tensor, ...]:
        """Stand-in data for ``stage``.

        ``autoencoder``: (padded wav,); ``sequence``: (encoder embeddings (B, 128, 265),
        velocity, instrument, pitch); ``finetune``: (padded wav, velocity, instrument, pitch).
        ``note_samples`` (autoencoder stage only) shortens the note, a multiple of 256.
        """
        stage = self._stage(stage)
        cfg = self.config
        b = check_batch(cfg.batch_size if batch is None else batch, self.name)
        dev = self._device(device)
        n = cfg.note_samples if note_samples is None else note_samples
        cfg.check_note(n)
        if stage != "autoencoder" and n != cfg.note_samples:
            raise ValueError(f"SING: the {stage} stage runs on full {cfg.note_samples}-sample notes")
        wav = F.pad(torch.rand(b, n, device=dev) * 2.0 - 1.0, (cfg.pad, cfg.pad))
        if stage == "autoencoder":
            return (wav,)
        cond = self.sample_conditioning(b, dev)
        if stage == "sequence":
            return (torch.randn(b, cfg.dimension, cfg.length, device=dev), *cond)
        return (wav, *cond)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per stage, each a fresh trainer in ``train.py``."""
        lr = self.config.lr
        seq, dec, enc = self.sequence_generator, self.decoder, self.encoder
        return {
            "autoencoder": torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=lr),
            "sequence": torch.optim.Adam(seq.parameters(), lr=lr),
            "finetune": torch.optim.Adam([*seq.parameters(), *dec.parameters()], lr=lr),
        }

    def _target(self, wav: Tensor) -> Tensor:
        """``utils.unpad1d(wav, strip)``: the padded note minus 1,792 samples at each end."""
        strip = self.config.strip
        return wav[..., strip:-strip]

    def _check_wav(self, wav: Tensor) -> None:
        self.config.check_note(wav.shape[-1] - 2 * self.config.pad)

    def training_step(self, *batch: Tensor, stage: str | None = None) -> dict[str, Tensor]:
        """One step of ``stage`` (default ``finetune``); see the module docstring."""
        stage = self._stage(stage)
        opt = self.optimizers()[stage]
        if stage == "autoencoder":
            (wav,) = batch
            self._check_wav(wav)
            loss = self.spectral_loss(self.decoder(self.encoder(wav)), self._target(wav))
        elif stage == "finetune":
            wav, velocity, instrument, pitch = batch
            self._check_wav(wav)
            loss = self.spectral_loss(self(velocity, instrument, pitch), self._target(wav))
        else:
            return self._sequence_step(*batch, opt=opt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    def _sequence_step(
        self, embeddings: Tensor, velocity: Tensor, instrument: Tensor, pitch: Tensor, opt: torch.optim.Optimizer
    ) -> dict[str, Tensor]:
        """``SequenceGeneratorTrainer._train_batch``: 9 truncated-BPTT chunks, one Adam step each."""
        cfg = self.config
        if embeddings.shape[-1] != cfg.length:
            raise ValueError(f"SING: sequence stage needs {cfg.length} embedding frames, got {embeddings.shape[-1]}")
        hidden = None
        total = torch.zeros((), device=embeddings.device)
        starts = range(0, cfg.length, cfg.truncated_gradient)
        for start in starts:
            length = min(cfg.truncated_gradient, cfg.length - start)
            rebuilt, hidden = self.sequence_generator(velocity, instrument, pitch, start, length, hidden)
            hidden = (hidden[0].detach(), hidden[1].detach())
            loss = F.mse_loss(rebuilt, embeddings[..., start : start + length])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total = total + loss.detach() / len(starts)
        return {"loss": total}

    def parameter_counts(self) -> dict[str, int]:
        gen = count_parameters(self.sequence_generator.parameters()) + count_parameters(self.decoder.parameters())
        return {
            "generation": gen,
            "sequence_generator": count_parameters(self.sequence_generator.parameters()),
            "decoder": count_parameters(self.decoder.parameters()),
            "encoder": count_parameters(self.encoder.parameters()),
        }
