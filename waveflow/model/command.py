"""``python -m waveflow synthesize``: audio from wavs (resynthesised from their log-mel) or saved log-mels.

Inputs with the same number of frames are batched; each clip is written as ``<input stem>.wav``
(or to the ``--out`` file itself for a single input). The fast path of
:mod:`~waveflow.model.synthesis` runs unless ``--reference`` asks for the model's own inverse.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from ..devices import PRECISIONS, resolve_device
from .checkpoint import load_checkpoint
from .synthesis import DEFAULT_SIGMA, FastSynthesizer, _load_mel_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``synthesize``."""
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint written by `waveflow train`")
    parser.add_argument("--wav", nargs="*", type=Path, default=[], help="wav files to resynthesise from their log-mel")
    parser.add_argument("--mel", nargs="*", type=Path, default=[], help="saved log-mels (.npy/.pt, shape (80, frames))")
    parser.add_argument(
        "--sigma",
        type=float,
        default=DEFAULT_SIGMA,
        help=f"temperature: std of the sampled latent (default {DEFAULT_SIGMA}, the training prior)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder for <input stem>.wav files; with exactly one input, a path ending in "
        ".wav names the output file itself",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="inputs of equal length synthesised together (4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent noise (0)")
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (CUDA when available, else CPU), cpu, cuda, cuda:1 (auto)"
    )
    parser.add_argument(
        "--reference", action="store_true", help="use the slow reference inverse instead of the fast path"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fast path in float32 (default) or bfloat16 (needs AVX512-BF16/AMX on a CPU, Ampere+ on CUDA)",
    )
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="on CUDA, replay each input shape's synthesis as one recorded CUDA graph (the eager fast path "
        "launches ~11 small kernels per layer and row)",
    )


def run(args: argparse.Namespace) -> int:
    """Synthesise every input, batching inputs with the same number of frames."""
    from tqdm import tqdm

    # Deferred: wav I/O pulls in librosa and soundfile, which `from waveflow import WaveFlow` need not pay for.
    from ..audio import HOP_LENGTH, SAMPLE_RATE, load_wav, log_mel, save_wav

    if not args.wav and not args.mel:
        raise ValueError("synthesize: give at least one --wav or --mel input")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected >= 1, got {args.batch_size}")
    if not (math.isfinite(args.sigma) and args.sigma >= 0):
        raise ValueError(f"--sigma: expected a finite value >= 0, got {args.sigma}")
    args.device = str(resolve_device(args.device))
    model, info = load_checkpoint(args.checkpoint, device=args.device)
    items: list[tuple[str, torch.Tensor]] = []
    for path in args.wav:
        audio, sr = load_wav(path)
        if audio.dim() != 1 or sr != SAMPLE_RATE:
            raise ValueError(
                f"--wav {path}: expected mono audio at {SAMPLE_RATE} Hz, got {sr} Hz with shape {tuple(audio.shape)}"
            )
        items.append((path.stem, log_mel(audio)))
    items += [(path.stem, _load_mel_file(path, model.config.n_mels)) for path in args.mel]
    stems = [s for s, _ in items]
    if len(set(stems)) != len(stems):
        raise ValueError(f"synthesize: input names collide in --out ({sorted(s for s in stems if stems.count(s) > 1)})")
    if args.reference and args.precision != "fp32":
        raise ValueError("--precision: the reference inverse runs in fp32 only; drop --reference or --precision")
    if args.reference and args.cuda_graphs:
        raise ValueError("--cuda-graphs: only the fast path is recorded as a CUDA graph; drop --reference")
    synth = model if args.reference else FastSynthesizer(model, precision=args.precision, cuda_graphs=args.cuda_graphs)
    run_fn = synth.infer if args.reference else synth
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    groups: dict[int, list[tuple[str, torch.Tensor]]] = {}
    for stem, mel in items:
        groups.setdefault(mel.shape[-1], []).append((stem, mel))
    single_file = len(items) == 1 and args.out.suffix.lower() == ".wav"
    if single_file:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    else:
        args.out.mkdir(parents=True, exist_ok=True)
    total = sum(HOP_LENGTH * (f - 1) for f in (m.shape[-1] for _, m in items)) / SAMPLE_RATE
    with tqdm(total=len(items), desc=f"synthesising {total:.1f} s", unit="clip") as bar:
        for _, group in sorted(groups.items()):
            for start in range(0, len(group), args.batch_size):
                part = group[start : start + args.batch_size]
                mel = torch.stack([m for _, m in part]).to(args.device)
                audio = run_fn(mel, sigma=args.sigma, generator=generator)
                for (stem, _), clip in zip(part, audio):
                    save_wav(args.out if single_file else args.out / f"{stem}.wav", clip.cpu())
                bar.update(len(part))
    print(
        f"wrote {len(items)} file(s) to {args.out} (checkpoint step {info['step']}, sigma {args.sigma}, "
        f"{'reference' if args.reference else args.precision}{', CUDA graphs' if args.cuda_graphs else ''})"
    )
    return 0
