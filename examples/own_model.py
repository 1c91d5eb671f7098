"""Weigh your own audio model's quality against its energy: two sizes of a small vocoder.

Run from anywhere (outputs go to ``--out``)::

    python examples/own_model.py --out own_model_results      # everything (needs waveflow-energy[all])
    python examples/own_model.py --meter-only                 # the meter alone (the core install suffices)

What it shows, in well under a minute on a laptop CPU:

1. the meter on any block of Python: a window per step, a live reading for a budget, a decorator;
2. FLOPs per second of generated audio, counted on the model itself;
3. one quality measure (log-mel L1 against a held-out clip) along training, against the training
   joules so far: the energy-to-quality curve;
4. generation energy per second of audio, with the estimate's [low, high], against final quality:
   the Pareto plot.

The model is a toy (a convolution on the mel and a transposed convolution that upsamples by the hop);
put yours in its place: anything that maps a mel to audio, or any callable, works the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def meter_demo() -> None:
    """The meter without torch: windows, a live reading for a budget, and the decorator."""
    from waveflow.energy import EnergyMeter, measure_energy

    @measure_energy(label="one step", warn=False)
    def step(n: int) -> int:
        return sum(i * i for i in range(n))

    budget_j = 1e9  # stop when the work so far has cost this many joules
    with EnergyMeter("meter demo", warn=False) as meter:
        for i in range(3):
            with meter.window(f"step {i}") as w:
                step(200_000)
            if meter.read().joules > budget_j:
                break
        so_far = meter.read()
    print(f"meter: 3 steps, last {w.joules:.3f} J [{w.joules_low:.3f}, {w.joules_high:.3f}] {w.methods()}")
    print(f"meter: the block so far {so_far.joules:.3f} J; decorated call {step.last_measurement.joules:.3f} J")
    print(meter.record.to_json()[:120] + " ...")


def model_demo(out: Path, steps: int, eval_every: int) -> None:
    """Two widths of a toy vocoder trained side by side; their curves and Pareto plot."""
    import pandas as pd
    import torch
    from torch import nn

    from waveflow.analysis.curves import best_at_budgets, crossings, default_budgets, findings
    from waveflow.analysis.figures.pareto import save_pareto_figure
    from waveflow.analysis.figures.quality import plot_energy_to_quality
    from waveflow.analysis.pareto import pareto_table
    from waveflow.analysis.plotting import save_figure_as
    from waveflow.audio import HOP_LENGTH, SAMPLE_RATE, load_wav, log_mel
    from waveflow.energy import EnergyMeter
    from waveflow.measures import flops_per_audio_second, log_mel_l1
    from waveflow.paths import LJSPEECH_MINI

    torch.manual_seed(0)
    clips = sorted((LJSPEECH_MINI / "wavs").glob("*.wav"))
    if len(clips) < 2:
        sys.exit(f"own_model: expected LJSpeech clips in {LJSPEECH_MINI / 'wavs'}; run from a waveflow checkout")
    train_audio, heldout_audio = (load_wav(p)[0][: SAMPLE_RATE * 2] for p in clips[:2])

    def pair(audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        audio = audio[: HOP_LENGTH * (len(audio) // HOP_LENGTH)]
        return torch.as_tensor(log_mel(audio)).unsqueeze(0), audio

    (train_mel, train_wav), (held_mel, held_wav) = pair(train_audio), pair(heldout_audio)
    seconds = len(held_wav) / SAMPLE_RATE

    def vocoder(width: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv1d(80, width, 3, padding=1), nn.Tanh(), nn.ConvTranspose1d(width, 1, HOP_LENGTH, stride=HOP_LENGTH)
        )

    def generate(model: nn.Module, mel: torch.Tensor, n: int) -> torch.Tensor:
        return model(mel)[0, 0, :n]

    marks, final = [], []
    for width in (32, 256):
        model = vocoder(width)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        spent = [0.0, 0.0, 0.0]  # training joules: middle, low, high (evaluation left out)
        with EnergyMeter(f"train w{width}", warn=False) as meter:
            for step in range(1, steps + 1):
                with meter.window("train step") as w:
                    loss = (generate(model, train_mel, len(train_wav)) - train_wav).abs().mean()
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                spent = [spent[0] + w.joules, spent[1] + w.joules_low, spent[2] + w.joules_high]
                if step % eval_every == 0 or step == steps:
                    with torch.no_grad():
                        quality = log_mel_l1(held_wav, generate(model, held_mel, len(held_wav)))
                    marks.append(
                        dict(
                            model=f"w{width}",
                            step=step,
                            energy_j=spent[0],
                            energy_j_low=spent[1],
                            energy_j_high=spent[2],
                            mel_l1=quality,
                        )
                    )
        repeats = 20  # one clip takes milliseconds: repeat it so the window spans many CPU-time ticks
        with torch.no_grad(), EnergyMeter(f"generate w{width}", warn=False) as meter:
            for _ in range(repeats):
                generate(model, held_mel, len(held_wav))
        gen = meter.record
        seconds_generated = seconds * repeats
        low, high = gen.joules_bounds()
        final.append(
            dict(
                model=f"w{width}",
                parameters=sum(p.numel() for p in model.parameters()),
                gflop_per_audio_s=flops_per_audio_second(model, held_mel, audio_seconds=seconds) / 1e9,
                gen_j_per_audio_s=gen.joules() / seconds_generated,
                gen_low=low / seconds_generated,
                gen_high=high / seconds_generated,
                method=gen.methods_label(),
                mel_l1=marks[-1]["mel_l1"],
            )
        )

    marks_table, summary = pd.DataFrame(marks), pd.DataFrame(final)
    out.mkdir(parents=True, exist_ok=True)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    columns = dict(quality="mel_l1", label="model")
    budgets = best_at_budgets(marks_table, default_budgets(marks_table, **columns), **columns)
    for line in findings(
        marks_table,
        budgets,
        crossings(marks_table, **columns),
        **columns,
        quality_label="held-out log-mel L1",
        quality_unit="",
    ):
        print(line)
    table = pareto_table(summary, ["gen_j_per_audio_s", "mel_l1"], "model")
    written = save_pareto_figure(table, ["gen_j_per_audio_s", "mel_l1"], "model", out / "pareto.png")
    fig = plot_energy_to_quality(
        marks_table,
        quality="mel_l1",
        quality_label="held-out log-mel L1 (lower is better)",
        label="model",
        energy_label="training energy so far (J, estimate's middle)",
    )
    written_curve = save_figure_as(fig, out / "energy_to_quality.png", marks_table)
    print(f"wrote {written['figure']}, {written_curve['figure']} (and their CSVs)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("own_model_results"), help="output folder (own_model_results)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per model (30)")
    parser.add_argument("--eval-every", type=int, default=5, help="steps between quality marks (5)")
    parser.add_argument("--meter-only", action="store_true", help="only the meter part (no torch needed)")
    args = parser.parse_args(argv)
    meter_demo()
    if not args.meter_only:
        model_demo(args.out, args.steps, args.eval_every)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
