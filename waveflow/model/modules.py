"""Building blocks of WaveFlow: the mel upsampler and the 2-D WaveNet-like coupling network.

Every convolution except the zero-initialised output convolution is weight-normalised (one gain
``g`` per output channel). The gains are real parameters and are counted: with them, and with the
last residual layer producing skip channels only, the parameter counts equal the paper's
(5,916,372 for r=64; see ``tests/test_model.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class MelUpsampler(nn.Module):
    """Upsample a mel spectrogram in time by ``prod(scales)`` with transposed 2-D convolutions.

    Each block is a weight-normed ``ConvTranspose2d(1, 1, (3, 2s), stride=(1, s), padding=(1, s/2))``
    followed by LeakyReLU. Treating the spectrogram as a one-channel image lets the 3-tap kernel
    smooth across neighbouring mel bins while the time axis grows exactly ``s``-fold:
    ``(L - 1) s - s + 2 s = L s``.

    Args:
        scales: time stride of each block (default (16, 16), i.e. x256).
        leaky_slope: negative slope of the LeakyReLU (0.4).
    """

    def __init__(self, scales: tuple[int, ...] = (16, 16), leaky_slope: float = 0.4) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.leaky_slope = leaky_slope
        self.convs = nn.ModuleList(
            weight_norm(nn.ConvTranspose2d(1, 1, (3, 2 * s), stride=(1, s), padding=(1, s // 2))) for s in self.scales
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, frames)`` -> ``(batch, n_mels, frames * prod(scales))``."""
        x = mel.unsqueeze(1)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.leaky_slope)
        return x.squeeze(1)


class ResidualLayer(nn.Module):
    """One gated layer: dilated conv (causal in height, centred in width) + 1x1 conditioning.

    The output of ``res_skip`` is split into a residual half (added to the input of the next layer)
    and a skip half (summed over layers). The last layer has no next layer, so it outputs the skip
    half only (``last=True``), as in the authors' released code.
    """

    def __init__(
        self, channels: int, n_mels: int, kernel_size: int, dilation_h: int, dilation_w: int, last: bool
    ) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size
        self.dilation_h = dilation_h
        self.dilation_w = dilation_w
        self.last = last
        self.dilated = weight_norm(nn.Conv2d(channels, 2 * channels, kernel_size, dilation=(dilation_h, dilation_w)))
        self.cond = weight_norm(nn.Conv2d(n_mels, 2 * channels, 1))
        self.res_skip = weight_norm(nn.Conv2d(channels, channels if last else 2 * channels, 1))

    @property
    def pad_h(self) -> int:
        """Rows of zeros above the input that make the height convolution causal."""
        return (self.kernel_size - 1) * self.dilation_h

    @property
    def pad_w(self) -> int:
        """Columns on each side that keep the width 'same' (non-causal along width)."""
        return (self.kernel_size - 1) * self.dilation_w // 2

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``x``: (batch, r, rows, width); ``c``: (batch, n_mels, rows, width).

        Returns ``(residual or None, skip)``. Output row ``i`` sees input rows ``<= i`` only.
        """
        # F.pad order: (left, right, top, bottom). Padding only the top makes row i depend on rows
        # i - (k-1) d_h ... i, i.e. never on a later row: the autoregressive property of the flow.
        h = self.dilated(F.pad(x, (self.pad_w, self.pad_w, self.pad_h, 0))) + self.cond(c)
        gated = torch.tanh(h[:, : self.channels]) * torch.sigmoid(h[:, self.channels :])
        out = self.res_skip(gated)
        if self.last:
            return None, out
        return x + out[:, : self.channels], out[:, self.channels :]


class CouplingNet(nn.Module):
    """The 2-D WaveNet that predicts each row's affine parameters from the rows above it.

    Args:
        channels: residual channels r.
        n_mels: conditioning channels.
        kernel_size: kernel of the dilated convs.
        dilations_h, dilations_w: per-layer dilations along height and width.
    """

    def __init__(
        self, channels: int, n_mels: int, kernel_size: int, dilations_h: tuple[int, ...], dilations_w: tuple[int, ...]
    ) -> None:
        super().__init__()
        n = len(dilations_h)
        self.front = weight_norm(nn.Conv2d(1, channels, 1))  # no activation after it
        self.layers = nn.ModuleList(
            ResidualLayer(channels, n_mels, kernel_size, dh, dw, last=(i == n - 1))
            for i, (dh, dw) in enumerate(zip(dilations_h, dilations_w))
        )
        # Zero init: log_s = t = 0, so every flow starts as the identity and training starts stable.
        self.out = nn.Conv2d(channels, 2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (batch, 1, rows, width), ``c``: (batch, n_mels, rows, width) -> (log_s, t), each
        (batch, 1, rows, width)."""
        h = self.front(x)
        skip = None
        for layer in self.layers:
            res, s = layer(h, c)
            skip = s if skip is None else skip + s
            if res is not None:
                h = res
        params = self.out(skip)
        return params[:, :1], params[:, 1:]
