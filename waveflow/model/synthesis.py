"""Fast WaveFlow synthesis: cached row-by-row inference as plain matrix products.

The reference :meth:`WaveFlow.infer` recomputes the whole coupling network on the growing prefix
of rows, so a flow costs O(h^2) row passes. Because every layer is causal along height, the
output for row ``i`` needs, per layer, only the current input row and the ``(k - 1) * d_h`` rows
that layer saw before. :class:`FastSynthesizer` keeps exactly those rows, so each flow is h - 1
single-row passes: the same arithmetic as one density pass, nothing redundant.

**The row step.** Weight norm is folded into plain weights once. Each layer's input rows live in a
double-written ring (:class:`_Ring`), so the k rows a dilated kernel reads are always one
contiguous ``(k*r, W + 2 pad)`` matrix and the kernel's k width taps are k ``addmm`` calls on
width-shifted views of it: no ``cat``, no im2col copy, no convolution call. The conditioning
1x1 conv (with the dilated conv's bias folded in) initialises the accumulator, reading its row as
a view of one row-major copy of the upsampled mel made per synthesis; the gate is one
sigmoid over the whole pre-activation (``tanh(a) = 2 sigmoid(2a) - 1``, the factors of 2 folded
into the weights); the residual product is written straight into the next layer's ring; the
gates of all layers are stacked, so a row's skip sum is one ``r x (n_layers r)`` product, its
biases summed once. Batch items run one by one, so every product is a 2-D GEMM.

**Where the time goes** (``make bench-breakdown``, which regenerates this table on any machine;
WF2, batch 1, 1 s of audio, W = 1,376 columns: 8 flows x 15 rows x 8 layers = 960 layer-steps;
2-vCPU AMD EPYC, float32, torch 2.13; two runs, matmul peak 165-172 GFLOP/s):

===================================  ==========================  =========  ==========================
work per second of audio              GEMM shape (M x K x N)      share      GFLOP/s (of the run's peak)
===================================  ==========================  =========  ==========================
dilated taps, 2,880 GEMMs             128 x 192 x 1,376           62-64 %    129-145 (0.78-0.84)
conditioning, 960 GEMMs               128 x 80 x 1,376            9 %        123-136 (0.74-0.79)
residual, 840 GEMMs                   64 x 64 x 1,376             4-5 %      75-101
skip, 120 stacked GEMMs               64 x 512 x 1,376            5 %        94-106
gate (element-wise)                   sigmoid 128 x W, sub, mul   6 %        --
copies (bias fills, ring twins)       64/128 x W                  3 %        --
outside ops (Python, dispatch)        ~10 ops per layer-step      4-7 %      --
===================================  ==========================  =========  ==========================

All matrix products together ran at 0.75-0.81 of the peak, the whole profiled synthesis at
0.60-0.67. The outside-ops line includes the profiler's own cost per op, so it is an upper bound.
WF4 (r = 128, so each product is twice as tall and twice as deep) is less exposed: products 91 %
of its time at about the run's peak (164 against 165 GFLOP/s), element-wise 4 %, copies 2 %,
outside ops 2 %.

The gate was 9 % with ``tanh`` (2.5 ns per element, a sigmoid 0.7 ns). The dispatch line is
measured at W = 32, where the arithmetic is a quarter of the time: ~15-20 us per op, mostly the
OpenMP fork/join of a two-thread GEMM call rather than Python. What is left above the peak is
the short-K products (K = 64 and 80 reach 55-85 % of what K = 192 does). Not possible: running
the height loop of several flows in one pass, since the rows are reversed between flows and row
1 of flow i needs the last row of flow i + 1.

Measured and not adopted (same machine, in-process, best of repetitions):

* *one GEMM per layer over all k x k taps* (a row buffer laid out im2col-ready, each row stored at
  its k width shifts): a 128 x 576 x 1,376 product took 1.47-1.68 ms against 1.37-1.64 ms for the
  three 128 x 192 x 1,376 tap products it replaces, so it saves nothing, while storing the shifted
  copies adds two r x W copies per layer-step. As a whole synthesis it ran 1.34x *slower*, most of
  it from zero-filling the larger buffers;
* *torch.compile of the gate* (Inductor, one fused kernel for ``(sigmoid(a) - 1/2) sigmoid(b)``):
  200-235 us per call against 175-200 us eager (the compiled call's own overhead and its output
  allocation outweigh the saved memory passes), after an 18 s compilation;
* *torch.compile of a whole layer step* (conditioning, three taps, gate and residual; Inductor, in
  functional form, since a compiled graph returns new tensors rather than writing into the rings):
  1.72-1.81 ms per WF2 layer step at W = 1,376 against 1.57-1.61 ms for the eager in-place step
  (30 interleaved rounds of 20 calls), after a 4 s compilation per shape. Fusing the gate's
  element-wise work does not pay for the outputs it allocates and the copies into the rings;
* channels-last layouts do not apply: every product here is already a plain 2-D GEMM on
  contiguous rows;
* *all layers' conditioning of a row as one tall product* (``(n_layers 2r) x n_mels`` against the
  row's mel, each layer's taps then accumulating into its slice): 0.87-0.92x at W = 1,376 (the
  5.6 MB result (WF2) evicts each layer's accumulator from the cache before its taps run; paired
  per-flow timings, 40 pairs), 1.02x at W = 344. The stacked skip product above, by contrast,
  ran 1.02-1.05x (WF2) and 0.99-1.0x (WF4) against per-layer K = r products, with 7 fewer calls
  per row, and was kept;
* *biases carried by the products* (a ones row under the conditioning and under each gate, K = 81
  and 65, and the residual add as the product's input): no bias fills and 840 fewer adds per WF2
  second, but 0.955x for WF2 (MKL runs the odd K slower; 40 per-flow pairs, interquartile
  0.94-0.98) and ~1.03x for WF4.

Its output equals the reference path to float32 rounding for the same ``z``
(``tests/test_synthesis.py`` checks <= 1e-4 for h = 8, 16, 32 and 64).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..devices import compute_dtype
from .checkpoint import load_error_reason
from .flow import WaveFlow, conditioning_order, prepare_latent, squeeze, unsqueeze

DEFAULT_SIGMA = 1.0  # temperature of the latent; 1.0 is the training prior (as in L0SG and Parakeet 2)


def fold_weight_norm(model: WaveFlow) -> WaveFlow:
    """Copy of ``model`` with plain weights: each weight-normed convolution's ``g * v / ||v||``.

    The copy is built plain (``WaveFlow(config, weight_norm=False)``) and loaded with the computed
    weights, rather than copied and stripped: a deep copy would share the dynamically created
    parametrised classes with the original, and building the parametrised twin first costs ~400
    norms for nothing (seconds on the meta device, where FLOP counting builds its synthesizer).
    """
    reference = next(model.parameters())
    folded = WaveFlow(model.config, weight_norm=False).to(device=reference.device, dtype=reference.dtype)
    state = {k: v for k, v in model.state_dict().items() if ".parametrizations." not in k}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            state[f"{name}.weight"] = module.weight.detach()
    folded.load_state_dict(state)
    return folded


def _output_halves(layer: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """``(res, res_bias, skip, skip_bias)``: the residual and skip halves of a layer's 1x1 output
    conv, weights scaled by the gate's outer 2 (see :class:`_FastLayer`). The last layer has no
    residual half (empty ``res``)."""
    w_out = 2.0 * layer.res_skip.weight.detach().flatten(1).to(dtype)
    b_out = layer.res_skip.bias.detach().to(dtype)[:, None]
    split = 0 if layer.last else layer.channels
    return w_out[:split], b_out[:split], w_out[split:], b_out[split:]


class _FastLayer(nn.Module):
    """Folded weights of one residual layer as plain matrices for the row step.

    ``taps[t]`` (2r, k*r) multiplies the k buffered input rows (oldest first, stacked as channels)
    shifted by ``t * d_w`` columns in the width-padded ring; ``cond``/``cond_bias`` give this
    layer's conditioning projection with the dilated conv's bias folded in; ``res`` is the residual
    half of the 1x1 output conv (its skip half lives in the flow's stacked ``skip``). Filter-half rows
    and the output conv are scaled by 2 so that the gate needs no tanh (see ``__init__``).
    """

    def __init__(self, layer: nn.Module, dtype: torch.dtype, residual: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__()
        k, r = layer.kernel_size, layer.channels
        # The gate tanh(a) * sigmoid(b) = 2 (sigmoid(2a) - 1/2) sigmoid(b): one sigmoid over the whole
        # pre-activation instead of a tanh (which costs ~3x a sigmoid per element on the CPU). The 2
        # inside is folded into the filter half of the dilated and conditioning weights, the 2
        # outside into the output 1x1 conv, which is linear in the gate. Powers of two: exact.
        scale = torch.ones(2 * r, 1, dtype=layer.dilated.weight.dtype, device=layer.dilated.weight.device)
        scale[:r] = 2.0  # the filter half
        w = layer.dilated.weight.detach() * scale[:, :, None, None]  # (2r, r, k_h, k_w); row a x input p-(k-1-a)d_h
        self.register_buffer("taps", w.permute(3, 0, 2, 1).reshape(k, 2 * r, k * r).to(dtype).contiguous())
        self.register_buffer("cond", (layer.cond.weight.detach().flatten(1) * scale).to(dtype).contiguous())
        bias = (layer.dilated.bias + layer.cond.bias).detach()[:, None] * scale
        self.register_buffer("cond_bias", bias.to(dtype).contiguous())
        res, res_bias = residual  # from _output_halves, which the flow calls once per layer
        self.register_buffer("res", res.contiguous())
        self.register_buffer("res_bias", res_bias.contiguous())
        self.channels, self.kernel_size, self.last = r, k, layer.last
        self.dilation_h, self.dilation_w, self.pad_w = layer.dilation_h, layer.dilation_w, layer.pad_w


class _FastFlow(nn.Module):
    """Folded weights of one flow: front 1x1 conv, layers, output 1x1 conv, as matrices."""

    def __init__(self, flow: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        r = flow.front.weight.shape[0]
        self.register_buffer("front", flow.front.weight.detach().reshape(r, 1).to(dtype).contiguous())
        self.register_buffer("front_bias", flow.front.bias.detach().reshape(r, 1).to(dtype).contiguous())
        halves = [_output_halves(layer, dtype) for layer in flow.layers]
        self.layers = nn.ModuleList(_FastLayer(layer, dtype, half[:2]) for layer, half in zip(flow.layers, halves))
        # The skip biases of all layers are one constant: added once, by the stacked skip product.
        self.register_buffer("skip_bias", sum(half[3] for half in halves).contiguous())
        # The skip halves side by side, (r, n_layers * r): a row's skip sum is one long-K product
        # over all its layers' gates instead of n_layers short-K ones (K = r) accumulated in place.
        self.register_buffer("skip", torch.cat([half[2] for half in halves], dim=1).contiguous())
        self.register_buffer("out", flow.out.weight.detach().reshape(2, r).to(dtype).contiguous())
        self.register_buffer("out_bias", flow.out.bias.detach().reshape(2, 1).to(dtype).contiguous())
        self.channels = r


class _Ring:
    """The rows one layer must remember, as a double-written ring per residue class.

    Output row p of a layer with height dilation d reads input rows p, p - d, ..., p - (k-1)d: all
    in the residue class p mod d. Each class keeps 2k row slots of (r, W + 2 pad) with zero width
    padding; row q of a class (q = p // d) is written to slots q mod k and q mod k + k, so the k
    newest rows are always the contiguous slots q mod k + 1 ... q mod k + k, oldest first: one
    (k*r, W + 2 pad) matrix whose width-shifted views are the GEMM operands. No ``cat``, no
    im2col copy; writing a row twice costs one r x W copy against a (2r x k r x k W) product.
    """

    def __init__(self, layer: _FastLayer, width: int, like: torch.Tensor) -> None:
        k, r, d = layer.kernel_size, layer.channels, layer.dilation_h
        self.k, self.r, self.d, self.pad, self.width = k, r, d, layer.pad_w, width
        self.shifts = [t * layer.dilation_w for t in range(k)]
        self.slots = like.new_zeros(d, 2 * k * r, width + 2 * layer.pad_w)
        self._views: dict[int, tuple] = {}

    def views(self, p: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """``(primary, twin, operands)`` for input row ``p``: the two (r, W) views where row p is
        written, and ``operands[t]``, the (k*r, W + 2 pad) window of rows p - (k-1)d ... p shifted
        by ``t * d_w`` columns, the (k*r, W) right-hand side of tap t. The slots repeat
        with period d*k in p, so each view is made once per ring (slicing a tensor costs
        microseconds of dispatch, against a tap product of tens of microseconds)."""
        key = p % (self.d * self.k)
        if key not in self._views:
            s = (p // self.d) % self.k
            ring, r, pad, w = self.slots[p % self.d], self.r, self.pad, self.width
            window = ring[(s + 1) * r : (s + 1 + self.k) * r]
            self._views[key] = (
                ring[(s + self.k) * r : (s + self.k + 1) * r, pad : pad + w],
                ring[s * r : (s + 1) * r, pad : pad + w],
                [window[:, shift : shift + w] for shift in self.shifts],
            )
        return self._views[key]


#: Input shapes whose CUDA graphs a :class:`FastSynthesizer` keeps (each holds its own memory pool).
MAX_CUDA_GRAPHS = 4


class _CapturedSynthesis(NamedTuple):
    """One recorded synthesis: replaying ``graph`` reads ``mel`` and ``z`` and writes ``audio``."""

    graph: torch.cuda.CUDAGraph
    mel: torch.Tensor
    z: torch.Tensor
    audio: torch.Tensor


class FastSynthesizer(nn.Module):
    """Inference-only copy of a :class:`WaveFlow` with cached row-by-row inversion.

    Args:
        model: a trained WaveFlow (left untouched; weights are copied and folded).
        precision: ``"fp32"`` (default, the reference) or ``"bf16"``: the coupling networks' weights
            and activations in bfloat16 (the latent, the affine update and the upsampler stay in
            float32). bf16 needs native hardware support (AVX512-BF16/AMX on a CPU, compute
            capability >= 8.0 on CUDA; :func:`waveflow.devices.bf16_support`) unless
            ``allow_emulated`` (tests only: an emulated bf16 run measures the emulation).
        cuda_graphs: on CUDA, record the whole synthesis of each input shape as one CUDA graph and
            replay it. The row-by-row inverse launches ~11 small kernels per layer and row (about
            11,000 per WF2 clip and item, whatever its length), so on a GPU much of an eager
            synthesis is launch latency and Python dispatch; a replay launches them all at once.
            Same kernels, same audio (``tests/test_synthesis.py``, on a GPU). The first call with a
            new shape pays a warm-up and the capture (about two syntheses).
    """

    def __init__(
        self, model: WaveFlow, precision: str = "fp32", allow_emulated: bool = False, cuda_graphs: bool = False
    ) -> None:
        super().__init__()
        device = next(model.parameters()).device
        dtype = compute_dtype(precision, device, allow_emulated=allow_emulated)
        if cuda_graphs and device.type != "cuda":
            raise ValueError(
                f"--cuda-graphs: CUDA graphs need the model on a CUDA device, got {device}; drop the option"
            )
        folded = fold_weight_norm(model).eval()
        self.config = model.config
        self.precision, self.dtype = precision, dtype
        self.upsampler = folded.upsampler
        self.flows = nn.ModuleList(_FastFlow(flow, dtype) for flow in folded.flows)
        self.register_buffer("inverse_perms", model.inverse_perms.clone(), persistent=False)
        # Which conditioning row each flow's row i reads, as Python ints: rows are picked as views of
        # one row-major copy of the conditioning, with no per-flow gather (and no device sync).
        with torch.device("cpu"):  # also when the model lives on meta (FLOP counting builds one there)
            self.cond_rows = conditioning_order(model.config).tolist()
        # The gate's 1/2 as a tensor: a Python scalar operand is wrapped into a new tensor on every call
        # (~4 us each, 960 per WF2 second); made here, since a CUDA graph cannot record a host copy.
        self.register_buffer("gate_offset", torch.tensor(0.5, dtype=dtype, device=device), persistent=False)
        self.requires_grad_(False)
        self.cuda_graphs = cuda_graphs
        self._graphs: OrderedDict[tuple, _CapturedSynthesis] = OrderedDict()

    @torch.inference_mode()
    def forward(
        self,
        mel: torch.Tensor,
        sigma: float = DEFAULT_SIGMA,
        z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Synthesise ``(B, T)`` audio from ``(B, n_mels, L)`` (same contract as ``WaveFlow.infer``)."""
        m, zz = prepare_latent(self.config, mel, sigma, z, generator)
        audio = self._replay(m, zz) if self.cuda_graphs else self._invert(m, zz)
        return audio[0] if mel.dim() == 2 else audio

    def _invert(self, m: torch.Tensor, zz: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` audio from the batched mel and latent: every flow inverted row by row."""
        h = self.config.n_height
        # (B, h, n_mels, W): each row's conditioning one contiguous (n_mels, W) matrix.
        c = squeeze(self.condition(m, zz.shape[-1]), h).permute(0, 2, 1, 3)
        c = c.to(self.dtype, memory_format=torch.contiguous_format)
        x = squeeze(zz.unsqueeze(1), h)[:, 0].contiguous()  # (B, h, W), float32 throughout
        for i in reversed(range(len(self.flows))):
            x = x[:, self.inverse_perms[i]].contiguous()
            for b in range(x.shape[0]):  # items one by one: every product below is a plain 2-D GEMM
                self._invert_flow(self.flows[i], x[b], c[b], self.cond_rows[i])
        return unsqueeze(x.unsqueeze(1)).squeeze(1)

    def _replay(self, m: torch.Tensor, zz: torch.Tensor) -> torch.Tensor:
        """:meth:`_invert` as one CUDA graph per input shape: captured on the first call with that
        shape, replayed afterwards from static input buffers (at most :data:`MAX_CUDA_GRAPHS` kept)."""
        key = (tuple(m.shape), tuple(zz.shape))
        captured = self._graphs.get(key)
        if captured is None:
            captured = self._graphs[key] = self._capture(m, zz)
            while len(self._graphs) > MAX_CUDA_GRAPHS:
                self._graphs.popitem(last=False)  # its memory pool goes with it
        self._graphs.move_to_end(key)
        captured.mel.copy_(m)
        captured.z.copy_(zz)
        captured.graph.replay()
        return captured.audio.clone()  # the static output is overwritten by the next replay

    def _capture(self, m: torch.Tensor, zz: torch.Tensor) -> _CapturedSynthesis:
        """Record :meth:`_invert` for these shapes. A warm-up on a side stream first, so that cuBLAS's
        workspaces and cuDNN's kernel choice are settled outside the capture (as the CUDA-graph
        documentation requires); the capture itself then only records the kernels."""
        static_mel, static_z = m.clone(), zz.clone()
        side = torch.cuda.Stream(device=m.device)
        side.wait_stream(torch.cuda.current_stream(m.device))
        with torch.cuda.stream(side):
            self._invert(static_mel, static_z)
        torch.cuda.current_stream(m.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            audio = self._invert(static_mel, static_z)
        return _CapturedSynthesis(graph, static_mel, static_z, audio)

    condition = WaveFlow.condition  # same upsampling and alignment as training

    def _invert_flow(self, flow: _FastFlow, x: torch.Tensor, c: torch.Tensor, cond_rows: list[int]) -> None:
        """Invert one flow in place on one item's ``x`` (h, W); its row i is conditioned on
        ``c[cond_rows[i]]``, a (n_mels, W) row of the item's conditioning ``c`` (h, n_mels, W)."""
        h, width = x.shape
        r, dtype = flow.channels, self.dtype
        rings = [_Ring(layer, width, c) for layer in flow.layers]  # zeros: the causal padding
        taps = [list(layer.taps.unbind(0)) for layer in flow.layers]
        acc = c.new_empty(2 * r, width)  # pre-activation of the gate
        filt, gate_half = acc[:r], acc[r:]
        gates = c.new_empty(len(flow.layers) * r, width)  # every layer's gate, stacked for the skip product
        layer_gates = gates.split(r)
        skip = c.new_empty(r, width)
        for row in range(1, h):
            p = row - 1  # the network's input row: output row `row` is predicted from rows < row
            # Front 1x1 conv of the previous audio row, written straight into layer 0's ring.
            e, twin, operands = rings[0].views(p)
            torch.addcmul(flow.front_bias, flow.front, x[p].to(dtype)[None], out=e)
            twin.copy_(e)
            c_row = c[cond_rows[row]]
            for j, layer in enumerate(flow.layers):
                torch.addmm(layer.cond_bias, layer.cond, c_row, out=acc)
                for tap, operand in zip(taps[j], operands):
                    torch.addmm(acc, tap, operand, out=acc)
                acc.sigmoid_()  # gate / 2 = (sigmoid(2a) - 1/2) sigmoid(b); see _FastLayer
                gate = torch.mul(filt.sub_(self.gate_offset), gate_half, out=layer_gates[j])
                if not layer.last:  # residual: next layer's input row, straight into its ring
                    nxt, twin, operands = rings[j + 1].views(p)
                    torch.addmm(layer.res_bias, layer.res, gate, out=nxt).add_(e)
                    twin.copy_(nxt)
                    e = nxt
            torch.addmm(flow.skip_bias, flow.skip, gates, out=skip)  # all layers' skip halves at once
            params = torch.addmm(flow.out_bias, flow.out, skip).float()
            x[row].sub_(params[1]).mul_(params[0].neg_().exp_())


def synthesize(
    model: WaveFlow | FastSynthesizer,
    mel: torch.Tensor,
    sigma: float = DEFAULT_SIGMA,
    z: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Synthesise audio with the fast path (builds a :class:`FastSynthesizer` in ``precision`` if given a model).

    Build the synthesizer once and reuse it when synthesising many inputs: folding copies weights.
    """
    synth = model if isinstance(model, FastSynthesizer) else FastSynthesizer(model, precision=precision)
    return synth(mel, sigma=sigma, z=z, generator=generator)


# ----------------------------------------------------------------------------------------------
# The synthesize command's --mel input (waveflow.model.command): a saved log-mel, read as data only
def _load_mel_file(path: Path, n_mels: int) -> torch.Tensor:
    """A saved log-mel: ``.npy`` or ``.pt`` holding ``(n_mels, frames)``.

    Both are read as data only (``allow_pickle=False``, ``weights_only=True``): an input file is
    never allowed to run code, so a pickled object array or a pickle naming a global is refused.
    """
    import numpy as np

    expected = f"expected a .npy or .pt file holding a ({n_mels}, frames) log-mel of numbers"
    if not path.is_file():
        raise FileNotFoundError(f"--mel {path} does not exist")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"--mel {path} cannot be read ({load_error_reason(exc)}); {expected}") from None
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            raise ValueError(f"--mel {path} holds {getattr(array, 'dtype', type(array).__name__)}; {expected}")
        mel = torch.from_numpy(array).float()
    elif path.suffix in (".pt", ".pth"):
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ...
            raise ValueError(f"--mel {path} cannot be read ({load_error_reason(exc)}); {expected}") from None
        if not isinstance(loaded, torch.Tensor) or loaded.is_complex():
            raise ValueError(f"--mel {path} holds a {type(loaded).__name__}; {expected}")
        mel = loaded.float()
    else:
        raise ValueError(f"--mel {path}: {expected}")
    if mel.dim() != 2 or mel.shape[0] != n_mels:
        raise ValueError(f"--mel {path}: expected shape ({n_mels}, frames), got {tuple(mel.shape)}")
    return mel
