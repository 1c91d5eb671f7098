"""Quality measures without a listening panel: held-out NLL, mel distances, predicted MOS.

The paper's quality axis is 1 - MOS/5 from listening tests (taken from the WaveFlow paper). We
cannot run a panel, so every model we train is scored with three proxies instead:

* held-out negative log-likelihood (nats and bits per sample) of full validation/test clips:
  exact for a flow, no synthesis needed, but it measures density fit, not perceived quality;
* reference-based distances between a clip and its resynthesis from the clip's own mel
  (log-mel L1 and mel-cepstral distortion); resynthesis is sample-aligned, so no DTW. They take
  any sample rate: the mel's window, hop and top frequency keep their length in seconds and
  hertz (:func:`mel_recipe`), so any model's audio is measured on the same time-frequency grid;
* a predicted MOS from DNSMOS P.808 (Reddy et al. 2022, through the ``speechmos`` package),
  a neural predictor trained on crowd-sourced P.808 ratings of noisy/enhanced speech. It is
  always labelled ``PRED_MOS_LABEL``; it is not a listening test and its scale is not the
  paper's MOS scale.

``python -m waveflow evaluate`` runs all of them on checkpoints and writes one CSV row per clip
plus a ``SUMMARY`` row per checkpoint.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import scipy.fft
import torch

from ..audio import F_MAX, F_MIN, HOP_LENGTH, LOG_FLOOR, N_FFT, N_MELS, SAMPLE_RATE, WIN_LENGTH, log_mel, whole_hops
from ..data import LJSpeech, Utterance

PRED_MOS_LABEL = "predicted MOS (DNSMOS P.808), not a listening test"
PRED_MOS_COLUMN = "pred_mos_dnsmos_p808"  # every column holding a predicted MOS starts with this
DNSMOS_SAMPLE_RATE = 16_000  # DNSMOS models take 16 kHz audio
MCD_ORDER = 24  # mel-cepstral coefficients c1..c24 (c0, the frame's overall level, is excluded)
MCD_SCALE = 10.0 / math.log(10.0)  # the conventional dB factor of MCD (Kubichek 1993)
SUMMARY_ID = "SUMMARY"

SynthFn = Callable[..., torch.Tensor]


# ------------------------------------------------------------------------------------------
# inputs
def _as_utterances(
    clips: LJSpeech | Iterable[Utterance | torch.Tensor | tuple[str, torch.Tensor]],
) -> Iterable[Utterance]:
    """Accept a dataset, Utterances, bare audio tensors, or ``(id, audio)`` pairs."""
    if isinstance(clips, LJSpeech):
        yield from clips.utterances()
        return
    for i, item in enumerate(clips):
        if isinstance(item, Utterance):
            yield item
            continue
        clip_id, audio = item if isinstance(item, tuple) else (f"clip{i}", item)
        x = torch.as_tensor(audio).float()
        if x.dim() != 1:
            raise ValueError(f"quality: clip {clip_id!r} has shape {tuple(x.shape)}; expected mono audio (time,)")
        x = x[: whole_hops(x.shape[0])]  # the model needs a multiple of h; the hop is one
        yield Utterance(clip_id, x, log_mel(x), "")


def _to_numpy(audio: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(torch.as_tensor(audio).detach().cpu().float().numpy(), dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected mono audio of shape (time,), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: audio contains NaN or infinite samples; expected finite values")
    return x


# ------------------------------------------------------------------------------------------
# held-out likelihood
def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def clip_nll(
    model: torch.nn.Module, audio: torch.Tensor, mel: torch.Tensor | None = None, sigma: float | None = None
) -> float:
    """Negative log-likelihood of one clip in nats per sample (``-model.log_likelihood``)."""
    device = _model_device(model)
    mel = log_mel(audio) if mel is None else mel
    return float(-model.log_likelihood(audio.to(device), mel.to(device), sigma=sigma))


@torch.no_grad()
def heldout_nll(model: torch.nn.Module, clips: LJSpeech | Iterable, sigma: float | None = None) -> dict[str, float]:
    """Held-out NLL over full clips, weighted by sample count (long clips count more).

    Clips are scored one by one (their lengths differ) at their full length cropped to a
    multiple of the hop, under the model's prior (``sigma=None`` takes ``config.sigma``). The
    density is that of float audio in [-1, 1], so values are comparable only on the same data.

    Returns:
        ``{"nats_per_sample", "bits_per_sample", "n_samples", "n_clips"}``.
    """
    was_training = model.training
    model.eval()
    total, n_samples, n_clips = 0.0, 0, 0
    try:
        for utt in _as_utterances(clips):
            n = utt.audio.shape[-1]
            total += clip_nll(model, utt.audio, utt.mel, sigma) * n
            n_samples += n
            n_clips += 1
    finally:
        model.train(was_training)
    if n_clips == 0:
        raise ValueError("heldout_nll: no clips given; expected at least one")
    nats = total / n_samples
    return {"nats_per_sample": nats, "bits_per_sample": nats / math.log(2), "n_samples": n_samples, "n_clips": n_clips}


# ------------------------------------------------------------------------------------------
# reference-based distances
def check_sample_rate(sample_rate: object, name: str) -> int:
    """``sample_rate`` as an ``int``, or a ValueError naming the parameter and what is accepted.

    A whole number of hertz > 0 (``16000``, ``22050.0``); a fraction or a non-number is refused
    rather than rounded, since it is almost always a mixed-up argument (seconds, a sample count).
    """
    ok = isinstance(sample_rate, numbers.Real) and not isinstance(sample_rate, bool)
    if ok and math.isfinite(sample_rate) and sample_rate > 0 and float(sample_rate).is_integer():
        return int(sample_rate)
    raise ValueError(f"{name}: sample_rate={sample_rate!r}; expected a whole number of Hz > 0 (e.g. 16000, 22050)")


def mel_recipe(sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """STFT and mel parameters of the distances at ``sample_rate``: ``n_fft``, ``hop_length``,
    ``win_length``, ``n_mels``, ``f_min``, ``f_max``.

    The 22.05 kHz recipe of :func:`waveflow.audio.log_mel` (a 1024-sample, 46 ms window, a 256-sample,
    11.6 ms hop, 80 mels up to 8 kHz) with the window and hop kept in **seconds** (rounded to whole
    samples) and the top mel edge at ``min(8 kHz, Nyquist)``: the same frames and bands at any rate,
    so a 16 kHz and a 44.1 kHz model are compared on the same time-frequency grid. At 22,050 Hz it
    is exactly ``log_mel``'s recipe.
    """
    sr = check_sample_rate(sample_rate, "mel_recipe")
    win = max(2, round(WIN_LENGTH * sr / SAMPLE_RATE))
    return {
        "n_fft": max(win, round(N_FFT * sr / SAMPLE_RATE)),
        "hop_length": max(1, round(HOP_LENGTH * sr / SAMPLE_RATE)),
        "win_length": win,
        "n_mels": N_MELS,
        "f_min": F_MIN,
        "f_max": min(F_MAX, sr / 2),
    }


@lru_cache(maxsize=8)
def _mel_filters(sample_rate: int) -> torch.Tensor:
    r = mel_recipe(sample_rate)
    basis = librosa.filters.mel(sr=sample_rate, n_fft=r["n_fft"], n_mels=r["n_mels"], fmin=r["f_min"], fmax=r["f_max"])
    return torch.as_tensor(basis, dtype=torch.float32)


def _log_mel_at(audio: np.ndarray, sample_rate: int, name: str) -> np.ndarray:
    """Natural-log mel ``(n_mels, frames)`` of mono float audio with :func:`mel_recipe`'s parameters.

    At 22,050 Hz this is :func:`waveflow.audio.log_mel` itself, so the distances there are those of
    the model's own mel to the bit; elsewhere the same steps (centred reflect-padded Hann STFT,
    magnitude, Slaney mel, log floor) with the scaled sizes.
    """
    x = torch.as_tensor(audio)
    if sample_rate == SAMPLE_RATE:
        return log_mel(x).numpy()
    r = mel_recipe(sample_rate)
    if x.shape[-1] <= r["n_fft"] // 2:
        raise ValueError(
            f"{name}: audio has {x.shape[-1]} samples; expected more than {r['n_fft'] // 2} (half the "
            f"{r['n_fft']}-sample FFT at {sample_rate} Hz)"
        )
    spec = torch.stft(
        x,
        n_fft=r["n_fft"],
        hop_length=r["hop_length"],
        win_length=r["win_length"],
        window=torch.hann_window(r["win_length"], dtype=x.dtype),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    mel = torch.matmul(_mel_filters(sample_rate), spec.abs())
    return torch.log(torch.clamp(mel, min=LOG_FLOOR)).numpy()


def _aligned_mels(reference, estimate, name: str, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    sr = check_sample_rate(sample_rate, name)
    ref = _log_mel_at(_to_numpy(reference, f"{name}: reference"), sr, f"{name}: reference")
    est = _log_mel_at(_to_numpy(estimate, f"{name}: estimate"), sr, f"{name}: estimate")
    frames = min(ref.shape[1], est.shape[1])  # resynthesis is time-aligned; trim the longer tail
    return ref[:, :frames], est[:, :frames]


def log_mel_l1(
    reference: torch.Tensor | np.ndarray, estimate: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE
) -> float:
    """Mean absolute difference of the natural-log mels, in nepers.

    Both are ``(time,)`` waveforms at ``sample_rate`` (default 22,050 Hz, where the mel is
    ``waveflow.audio.log_mel``; at other rates :func:`mel_recipe` scales it); frames are aligned
    from the start and the longer one is trimmed to the shorter.

    Raises:
        ValueError: a sample rate that is not a whole number of Hz > 0, or audio that is not mono
            and finite.
    """
    ref, est = _aligned_mels(reference, estimate, "log_mel_l1", sample_rate)
    return float(np.mean(np.abs(ref - est)))


def mel_cepstrum(log_mel_spec: np.ndarray, order: int = MCD_ORDER) -> np.ndarray:
    """Mel-cepstral coefficients c1..c_order of a natural-log mel ``(n_mels, frames)`` -> ``(order, frames)``.

    ``c_m = (1/M) * sum_k L_k cos(pi m (k + 1/2) / M)`` over the ``M`` mel bins: a DCT-II scaled
    so that ``L_k ~ c_0 + 2 sum_m c_m cos(...)``, the same convention as a cepstrum from the DFT
    of a log spectrum. With it, ``sqrt(2 sum_m dc_m^2)`` is the RMS (over mel bins) of the
    log-mel difference restricted to quefrencies 1..order (Parseval).
    """
    m = log_mel_spec.shape[0]
    if not 1 <= order < m:
        raise ValueError(f"mel_cepstrum: order={order}; expected 1 <= order < n_mels={m}")
    c = scipy.fft.dct(log_mel_spec.astype(np.float64), type=2, axis=0) / (2 * m)  # scipy's DCT-II has a factor 2
    return c[1 : order + 1]


def mcd_from_log_mels(reference: np.ndarray, estimate: np.ndarray, order: int = MCD_ORDER) -> float:
    """MCD in dB between two aligned log mels ``(n_mels, frames)``, averaged over frames.

    ``MCD = 10 / ln(10) * sqrt(2 * sum_{m=1}^{order} (c_m - c'_m)^2)`` per frame (Kubichek 1993).
    Our cepstra come from the 80-bin log mel, not from SPTK's all-pass mel-cepstral analysis
    (alpha = 0.455), so values are comparable between our models but not to published MCDs.
    """
    if reference.shape != estimate.shape:
        raise ValueError(
            f"mcd_from_log_mels: shapes {reference.shape} and {estimate.shape}; expected equal (n_mels, frames)"
        )
    diff = mel_cepstrum(reference, order) - mel_cepstrum(estimate, order)
    return float(np.mean(MCD_SCALE * np.sqrt(2.0 * np.sum(diff**2, axis=0))))


def mel_cepstral_distortion(
    reference: torch.Tensor | np.ndarray,
    estimate: torch.Tensor | np.ndarray,
    order: int = MCD_ORDER,
    sample_rate: int = SAMPLE_RATE,
) -> float:
    """MCD in dB between two time-aligned waveforms at ``sample_rate`` (see :func:`mcd_from_log_mels`).

    Frames are aligned from the start without DTW: a vocoder's resynthesis keeps the timing. The
    mels follow :func:`mel_recipe` (``waveflow.audio.log_mel`` at the default 22,050 Hz), so the
    cepstra cover the same 0 to 8 kHz band at any rate of 16 kHz or more.
    """
    ref, est = _aligned_mels(reference, estimate, "mel_cepstral_distortion", sample_rate)
    return mcd_from_log_mels(ref, est, order)


# ------------------------------------------------------------------------------------------
# predicted MOS
_P808_SESSION: Any = None  # onnxruntime session of model_v8.onnx, created on first use


def _p808_session() -> Any:
    """The P.808 ONNX model bundled in the speechmos wheel (nothing is downloaded at run time)."""
    global _P808_SESSION
    if _P808_SESSION is None:
        import onnxruntime
        import speechmos

        path = Path(speechmos.__file__).resolve().parent / "dnsmos_models" / "model_v8.onnx"
        if not path.is_file():
            raise FileNotFoundError(
                f"predicted_mos: {path} is missing; expected the DNSMOS P.808 model in the speechmos wheel"
            )
        _P808_SESSION = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _P808_SESSION


def predicted_mos(audio: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """DNSMOS P.808 score of a mono clip at ``sample_rate`` Hz: a predicted MOS, not a listening test.

    Audio at any rate is resampled to the 16 kHz DNSMOS takes (librosa; 16 kHz audio is used as it
    is) and clipped to [-1, 1], so models at different rates are scored by the same predictor. The
    windowing and features are those of ``speechmos.dnsmos.run`` (Microsoft's ``dnsmos_local.py``):
    a clip shorter than 9.01 s is repeated until it is at least that long, 9.01 s windows are scored
    with a 1 s hop, and the scores are averaged; ``run``'s ``p808_mos`` equals our value (tested).
    Unlike ``run`` we skip the SIG/BAK/OVRL model, which costs ~0.45 s per window against ~0.06 s
    for P.808. A clip costs (windows) x ~0.06 s on 2 CPU cores: 1 window for 9-10 s or 2.3-2.5 s
    clips, 6 for a 1.9 s clip (looped to 15 s), up to 10 for a 9.0 s clip (looped to 18 s).
    onnxruntime is imported, and the model loaded, on the first call only.
    """
    from speechmos import dnsmos  # imports onnxruntime

    sample_rate = check_sample_rate(sample_rate, "predicted_mos")
    x = _to_numpy(audio, "predicted_mos")
    if sample_rate != DNSMOS_SAMPLE_RATE:
        x = librosa.resample(x, orig_sr=sample_rate, target_sr=DNSMOS_SAMPLE_RATE)
    x = np.clip(x, -1.0, 1.0).astype(np.float32)
    if x.size == 0:
        raise ValueError("predicted_mos: empty audio; expected at least one sample")
    session, fs = _p808_session(), DNSMOS_SAMPLE_RATE
    window = int(dnsmos.INPUT_LENGTH * fs)
    while len(x) < window:
        x = np.append(x, x)
    scores = []
    for k in range(int(np.floor(len(x) / fs) - dnsmos.INPUT_LENGTH) + 1):
        segment = x[int(k * fs) : int((k + dnsmos.INPUT_LENGTH) * fs)]
        if len(segment) < window:
            continue
        # audio_melspec does not use its instance: 120-bin dB mel, 20 ms frames, 10 ms hop
        features = dnsmos.DNSMOS.audio_melspec(None, audio=segment[:-160]).astype(np.float32)[np.newaxis]
        scores.append(float(session.run(None, {"input_1": features})[0][0][0]))
    return float(np.mean(scores))
