"""Table 1 models on this machine: the `zoo` command's rows (WF2 included), metered inference and
training steps of tiny replicas, bad inputs, and the implied-utilisation arithmetic.

Full-size models are only counted on meta (WaveGAN, the cheapest to count); everything metered
runs on tiny variants, so the whole file takes a few seconds.
"""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from waveflow.cli import main
from waveflow.energy import read_records
from waveflow.experiments.zoo_energy import (
    REPLICA_NOTE,
    ROW_COLUMNS,
    UTILISATION_LOW,
    _bounds,
    findings,
    flops_per_audio_second,
    flops_per_step,
    fp32_peak,
    implied_utilisation,
    measure_zoo_inference,
    measure_zoo_training,
    schedule_steps,
    schedule_table,
    training_cost_table,
    verdict,
    zoo_batch_sweep,
    zoo_rows,
)
from waveflow.experiments.zoo_tables import (
    FORM_FACTOR_COLUMNS,
    UTILISATION_COMFORTABLE,
    UTILISATION_DEMANDING,
    UTILISATION_MAX_PLAUSIBLE,
    grade,
    other_variant,
)
from waveflow.measures.flops import count
from waveflow.model import PAPER_CONFIGS, WaveFlow
from waveflow.zoo import build, get_spec

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny CPU forwards: one thread (conftest)


@pytest.fixture(scope="module")
def csv_rows() -> pd.DataFrame:
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["zoo", "--model", "wavegan", "--format", "csv"]) == 0
    return pd.read_csv(io.StringIO(out.getvalue()))


# ------------------------------------------------------------------------------------------------
# the zoo command
def test_cli_rows_are_the_model_then_wf2(csv_rows):
    assert tuple(csv_rows.columns) == ROW_COLUMNS
    assert csv_rows.model.tolist() == ["wavegan", "WF2"]
    w = csv_rows.iloc[0]
    assert (w.params_generator, w.params_other) == (19_065_345, 17_427_969)
    assert (w.sample_rate, w.audio_s_per_forward) == (16_000, 1.024)
    assert (w.examples_per_step, w.reported_steps, w.reported_hours, w.reported_gpus) == (320, 200_000, 96, 1)
    # 2 x the 0.847 G MACs per 16,384 samples of waveflow/zoo/REFERENCES.md, per second of audio, within 2 %
    spec = get_spec("wavegan")
    reference = 2 * spec.reference_macs_per_forward / spec.audio_seconds_per_forward / 1e9
    assert w.inference_gflop_per_audio_s == pytest.approx(reference, rel=0.02)
    assert w.training_gflop_per_step == pytest.approx(flops_per_step(build("wavegan", device="meta")) / 1e9)
    # a WGAN-GP step: 5 critic updates (G fwd, D on real/fake/interpolates, double backprop) + 1 G update
    # at batch 64 is far more than 6 x 64 generator forwards
    assert w.training_gflop_per_step > 6 * 64 * w.inference_gflop_per_audio_s * 1.024


def test_cli_wf2_row_comes_from_flops_count(csv_rows):
    wf2 = csv_rows.iloc[1]
    counted = count(PAPER_CONFIGS["WF2"], "training", "WF2")
    with torch.device("meta"):
        params = WaveFlow(PAPER_CONFIGS["WF2"]).num_parameters()
    assert (wf2.params_generator, wf2.params_other, wf2.sample_rate) == (params, 0, 22_050)
    assert wf2.inference_gflop_per_audio_s == pytest.approx(counted.forward_flops_per_audio_second / 1e9)
    assert wf2.training_gflop_per_step == pytest.approx(counted.flops_per_audio_second * 8 * 16_000 / 22_050 / 1e9)
    assert (wf2.examples_per_step, wf2.reported_steps, wf2.reported_gpus) == (8, 3_000_000, 4)
    assert math.isnan(wf2.reported_hours)  # the paper measured WF2's energy and published no hours


def test_cli_table_says_what_the_models_are(csv_rows, capsys):
    assert main(["zoo", "--model", "WaveGAN"]) == 0  # case-insensitive; the counts are cached by now
    out = capsys.readouterr().out
    assert "19,065,345" in out and "WF2" in out and REPLICA_NOTE in out


def test_cli_unknown_model_is_one_line_and_exit_2(capsys):
    assert main(["zoo", "--model", "wavenet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown zoo model 'wavenet'" in err and "flowavenet" in err
    with pytest.raises(ValueError, match="unknown zoo model"):
        zoo_rows(["samplernn", "nope"])


# ------------------------------------------------------------------------------------------------
# measurements on tiny variants
def test_samplernn_inference_is_timed_on_a_clip_and_labelled_extrapolated(tmp_path):
    log = tmp_path / "energy.csv"
    row = measure_zoo_inference("samplernn", tiny=True, clip_s=0.003, log=log)
    assert row["clip_s"] == 48 / 16_000  # 0.003 s rounded to whole 8-sample top-tier frames
    assert row["audio_s"] == row["clip_s"] and row["variant"].startswith("reduced")
    assert row["j_per_audio_s_label"].startswith("extrapolated from a 0.003 s clip")
    assert row["energy_method"] in row["j_per_audio_s_label"]
    assert row["j_per_audio_s"] == pytest.approx(row["energy_j_pue"] / row["audio_s"])
    assert row["j_per_audio_s_low"] <= row["j_per_audio_s"] <= row["j_per_audio_s_high"]
    tiny_flops = flops_per_audio_second(build("samplernn", tiny=True, device="meta"))
    assert row["gflop_per_audio_s"] == pytest.approx(tiny_flops / 1e9)
    assert row["note"] == REPLICA_NOTE
    assert read_records(log).label.tolist() == ["zoo inference samplernn b1"]


def test_batch_sweep_generates_the_same_examples_and_marks_the_optimum():
    table = zoo_batch_sweep("wavegan", [2, 1], tiny=True, log=False)
    assert table.batch.tolist() == [1, 2] and table.calls.tolist() == [2, 1]
    assert table.audio_s.nunique() == 1 and table.audio_s.iloc[0] == pytest.approx(2 * 16_384 / 16_000)
    assert table.j_per_audio_s_label.str.startswith("measured over").all()
    assert table.optimal.sum() >= 1 and (table.within_noise | ~table.optimal).all()
    assert table.loc[table.optimal, "j_per_audio_s"].iloc[0] == table.j_per_audio_s.min()


def test_training_energy_per_step_and_per_example(tmp_path):
    row = measure_zoo_training("wavegan", tiny=True, steps=2, warmup_steps=0, log=tmp_path / "e.csv")
    assert (row["batch"], row["paper_batch"], row["stage"]) == (2, 64, "train")
    assert row["examples"] == 2 * 5 * 2  # steps x 5 critic batches x batch 2
    assert row["j_per_step"] == pytest.approx(row["energy_j_pue"] / 2)
    assert row["j_per_example"] == pytest.approx(row["energy_j_pue"] / 20)
    assert row["j_per_paper_step"] == pytest.approx(row["j_per_example"] * 320)
    assert row["j_per_paper_step_label"].startswith("extrapolated from batch 2")
    assert row["j_per_example_low"] <= row["j_per_example"] <= row["j_per_example_high"]
    assert math.isnan(row["schedule_kwh"])  # a reduced model is never scaled to the paper's schedule
    assert row["gflop_per_step"] == pytest.approx(flops_per_step(build("wavegan", tiny=True, device="meta")) / 1e9)
    assert read_records(tmp_path / "e.csv").label.tolist() == ["zoo train wavegan train b2"]


def test_bounds_degrade_when_the_meter_gives_none():
    measured = SimpleNamespace(energy_j=2.0, pue=1.5, methods_label=lambda: "measured:rapl")
    assert _bounds(measured) == (3.0, 3.0)
    estimated = SimpleNamespace(energy_j=2.0, pue=1.0, methods_label=lambda: "estimated:tdp×utilisation")
    assert all(math.isnan(b) for b in _bounds(estimated))
    interval = SimpleNamespace(energy_j=2.0, energy_j_low=1.0, energy_j_high=4.0, pue=2.0, methods_label=lambda: "")
    assert _bounds(interval) == (2.0, 8.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: measure_zoo_inference("wavenet", log=False), "unknown zoo model 'wavenet'"),
        (lambda: measure_zoo_inference("flowavenet", clip_s=0.001, log=False), "256-sample hop"),
        (lambda: measure_zoo_inference("samplernn", clip_s=1e-4, log=False), "8-sample top-tier frame"),
        (lambda: measure_zoo_inference("samplernn", clip_s=-1.0, log=False), "8-sample top-tier frame"),
        (lambda: measure_zoo_inference("wavegan", clip_s=0.5, log=False), "fixed 1.024 s per call"),
        (lambda: measure_zoo_inference("wavegan", batch=0, log=False), "inference batch: expected a positive"),
        (lambda: measure_zoo_training("sing", batch=0, log=False), "training batch: expected a positive"),
        (lambda: measure_zoo_training("sing", steps=0, log=False), "training steps: expected a positive"),
        (lambda: zoo_batch_sweep("wavegan", [1, 0], log=False), "batch size: expected a positive"),
        (lambda: zoo_batch_sweep("wavegan", [], log=False), "batch_sizes is empty"),
    ],
)
def test_bad_input_fails_before_any_model_is_built(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------------------
# the paper's hours against the counted work
def test_implied_utilisation_arithmetic():
    # 1 GPU at 10 TFLOP/s for 1 h can do 3.6e16 FLOP: that much work implies 100 %, half of it 50 %
    assert implied_utilisation(3.6e16, hours=1, n_gpus=1, peak_tflops=10) == pytest.approx(1.0)
    assert implied_utilisation(3.6e16, hours=2, n_gpus=1, peak_tflops=10) == pytest.approx(0.5)
    assert implied_utilisation(3.6e16, hours=1, n_gpus=4, peak_tflops=10) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="expected all > 0"):
        implied_utilisation(1.0, hours=0, n_gpus=1, peak_tflops=10)


@pytest.mark.parametrize(
    ("utilisation", "expected"),
    [
        (0.02, "low"),
        (0.05, "comfortable"),
        (0.30, "comfortable"),
        (0.50, "comfortable"),  # <= 50 %: below a well-tuned fp32 CNN training (~58 % on a V100)
        (0.51, "demanding"),
        (0.58, "demanding"),
        (0.80, "demanding"),  # up to what large fp32 SGEMMs reach (80-90 %)
        (0.81, "implausible"),
        (0.95, "implausible"),
        (math.nan, "not checkable"),
    ],
)
def test_verdicts_are_graded_on_fp32_reference_points(utilisation, expected):
    assert grade(utilisation) == expected
    assert verdict(utilisation).startswith(f"{expected}: ")


def test_the_grades_are_fp32_ceilings_not_a_bf16_one():
    assert (UTILISATION_LOW, UTILISATION_COMFORTABLE, UTILISATION_DEMANDING) == (0.05, 0.5, 0.8)
    assert UTILISATION_MAX_PLAUSIBLE == UTILISATION_DEMANDING
    assert "58%" in verdict(0.6) and "matrix products" in verdict(0.9)


def test_the_other_form_factor_of_a_reported_gpu():
    assert other_variant("P100") == ("Tesla P100 SXM2 (NVLink)", "SXM2", 10.6)
    assert other_variant("P100 SXM2")[1:] == ("PCIe", 9.3)
    assert other_variant("V100")[1:] == ("PCIe", 14.0) and other_variant("V100 PCIe")[1:] == ("SXM2", 15.7)
    assert other_variant("TITAN X") is None  # one form factor only
    assert other_variant("A100") is None  # PCIe and SXM4 share the 19.5 TFLOP/s fp32 peak


def test_wavegan_schedule_against_the_p100_peak():
    stages = schedule_table(["wavegan"])
    row = stages.iloc[0]
    assert fp32_peak("P100") == (9.3, fp32_peak("Tesla P100-PCIE-16GB")[1])
    per_step = flops_per_step(build("wavegan", device="meta"))
    expected = 200_000 * per_step / (9.3e12 * 96 * 3600)
    assert row.implied_utilisation == pytest.approx(expected) == pytest.approx(row.implied_utilisation_naive)
    assert row.max_steps_at_peak == pytest.approx(200_000 / expected)
    # the same hours on the SXM2 board (10.6 TFLOP/s) instead of the PCIe one the paper's TDP assumes
    assert (row.form_factor, row.form_factor_other_variant) == ("PCIe", "SXM2")
    assert row.implied_utilisation_other_variant == pytest.approx(expected * 9.3 / 10.6)
    measured = pd.DataFrame(
        [
            {"model": "wavegan", "batch": b, "j_per_audio_s": j, "j_per_audio_s_low": j, "j_per_audio_s_high": j}
            for b, j in ((1, 3.0), (4, 2.0))
        ]
    ).assign(j_per_audio_s_label="measured")
    table = training_cost_table(["wavegan"], inference=measured)
    t = table.iloc[0]
    assert (t.tdp_kwh_paper, t.gpu, t.verdict) == (24.0, "1 x Tesla P100 PCIe (12/16 GB)", verdict(expected))
    assert (t.gpu_other_variant, t.fp32_peak_tflops_other_variant) == ("Tesla P100 SXM2 (NVLink)", 10.6)
    assert t.implied_utilisation_other_variant == pytest.approx(expected * 9.3 / 10.6)
    assert t.verdict_other_variant == verdict(expected * 9.3 / 10.6)
    # every column notebook 02 and its readers use is still there, the form-factor ones added after
    known = ["model", "gpu", "hours", "tdp_kwh_paper", "steps", "training_eflop", "training_eflop_effective"]
    known += ["fp32_peak_tflops", "fp32_peak_source", "implied_utilisation", "implied_utilisation_naive", "verdict"]
    known += ["inference_gflop_per_audio_s", "j_per_audio_s", "best_batch", "j_per_example", "measured_here"]
    assert set(known) <= set(table.columns)
    assert list(table.columns[: len(known) - 5]) == known[:-5]
    assert tuple(table.columns[-len(FORM_FACTOR_COLUMNS) :]) == FORM_FACTOR_COLUMNS
    assert (t.j_per_audio_s, t.best_batch, t.j_per_audio_s_best, bool(t.measured_here)) == (3.0, 4, 2.0, True)


def test_schedules_that_the_papers_do_not_give_as_steps():
    assert schedule_steps("samplernn") == {}
    assert schedule_steps("sing") == {"autoencoder": 45_200, "sequence": 45_200, "finetune": 18_080}
    assert schedule_steps("gansynth") == {"train": 1_375_000.0}


def test_findings_are_computed_from_the_table():
    table = pd.DataFrame(
        [
            {
                "model": "flowavenet",
                "gpu": "1 x V100",
                "hours": 272.0,
                "fp32_peak_tflops": 15.7,
                "training_eflop_effective": 4.55,
                "implied_utilisation": 0.3,
                "implied_utilisation_naive": 0.3,
                "verdict": verdict(0.3),
                "form_factor_other_variant": "PCIe",
                "fp32_peak_tflops_other_variant": 14.0,
                "implied_utilisation_other_variant": 0.3 * 15.7 / 14,
            },
            {
                "model": "wavegan",
                "gpu": "1 x P100",
                "hours": 96.0,
                "fp32_peak_tflops": 9.3,
                "training_eflop_effective": 1.5,
                "implied_utilisation": 0.47,
                "implied_utilisation_naive": 0.47,
                "verdict": verdict(0.47),
                "form_factor_other_variant": "SXM2",
                "fp32_peak_tflops_other_variant": 10.6,
                "implied_utilisation_other_variant": 0.47 * 9.3 / 10.6,
            },
            {
                "model": "samplernn",
                "gpu": "1 x TITAN X",
                "hours": 168.0,
                "fp32_peak_tflops": 6.6,
                "training_eflop_effective": math.nan,
                "implied_utilisation": math.nan,
                "implied_utilisation_naive": math.nan,
                "verdict": verdict(math.nan),
                "form_factor_other_variant": "",
                "fp32_peak_tflops_other_variant": math.nan,
                "implied_utilisation_other_variant": math.nan,
            },
        ]
    )
    stages = pd.DataFrame(
        [
            {"model": "samplernn", "stage": "train", "max_steps_at_peak": 1234.0, "implied_utilisation": math.nan},
            {"model": "sing", "stage": "autoencoder", "max_steps_at_peak": 1.0, "implied_utilisation": 0.9},
            {"model": "sing", "stage": "finetune", "max_steps_at_peak": 1.0, "implied_utilisation": 0.1},
        ]
    ).assign(steps=[math.nan, 45_200, 18_080], hours=[168.0, 12.0, 30.0])
    flo, wgan, srnn, summary = findings(table, stages)
    assert "30% of peak (34% if PCIe at 14 TFLOP/s), comfortable" in flo and "272 h" in flo
    assert "47% of peak (41% if SXM2 at 10.6 TFLOP/s), comfortable" in wgan and "50% boundary" in wgan
    assert "no step count" in srnn and "1,234 steps" in srnn
    assert summary.startswith("In short, comfortable: flowavenet, wavegan; not checkable: samplernn. ")
    assert "sing's autoencoder stage would need 90% of the fp32 peak to fit its 45,200 steps in the paper's 12 h" in (
        summary
    )
    assert "the code's schedule and the reported hours are inconsistent" in summary


def test_a_stage_the_code_cannot_fit_makes_the_schedule_inconsistent(monkeypatch):
    """SING: a comfortable total hides an autoencoder stage the code's 50 epochs cannot fit in 12 h on
    four P100 PCIe; on SXM2 boards the stage would only be demanding, which the sentences say too."""
    import waveflow.experiments.zoo_tables as zt

    per_step = {"autoencoder": 3.2e13}  # 45,200 steps in 12 h on 4 x 9.3 TFLOP/s: 90 %
    monkeypatch.setattr(zt, "flops_per_step", lambda model, stage=None, batch=None: per_step.get(stage, 1e13))
    monkeypatch.setattr(zt, "flops_per_audio_second", lambda model: 1e9)
    stages = schedule_table(["sing"])
    ae = stages.set_index("stage").loc["autoencoder"]
    assert ae.implied_utilisation == pytest.approx(45_200 * 3.2e13 / (4 * 9.3e12 * 12 * 3600))
    assert ae.implied_utilisation_other_variant == pytest.approx(ae.implied_utilisation * 9.3 / 10.6)
    assert "epochs" in ae.schedule_source and "assumed" in ae.schedule_source
    table = training_cost_table(["sing"])
    t = table.iloc[0]
    assert grade(t.implied_utilisation) == "comfortable"
    assert (
        t.verdict
        == "inconsistent with the code's schedule: the autoencoder stage would need 90% of fp32 peak in its 12 h"
    )
    sing, summary = findings(table, stages)
    assert "comfortable in total, but inconsistent with the code's schedule" in sing
    assert "autoencoder 90% (79% if SXM2; implausible)" in sing
    assert "90% of the fp32 peak of 4 x Tesla P100 PCIe to fit its 45,200 steps in the paper's 12 h" in summary
    assert "79% (demanding) if the boards were SXM2" in summary


def test_missing_fp32_column_is_a_clear_error(tmp_path, monkeypatch):
    from waveflow.energy import hardware

    path = tmp_path / "gpus.csv"
    pd.read_csv(hardware.GPUS_CSV).drop(columns=["fp32_peak_tflops"]).to_csv(path, index=False)
    monkeypatch.setattr(hardware, "GPUS_CSV", path)
    with pytest.raises(ValueError, match="no fp32_peak_tflops column"):
        fp32_peak("V100")


def test_a_stage_without_steps_leaves_the_total_unknown(monkeypatch):
    """SING sums its three stages; SampleRNN, with no published steps, stays NaN (not 0 FLOPs)."""
    import waveflow.experiments.zoo_tables as zt  # where training_cost_table looks the counts up

    monkeypatch.setattr(zt, "flops_per_step", lambda model, stage=None, batch=None: 1e13)  # skip the counting
    monkeypatch.setattr(zt, "flops_per_audio_second", lambda model: 1e9)
    table = training_cost_table(["samplernn", "sing"]).set_index("model")
    assert math.isnan(table.loc["samplernn", "training_eflop"]) and math.isnan(table.loc["samplernn", "steps"])
    assert table.loc["samplernn", "verdict"].startswith("not checkable")
    assert table.loc["sing", "steps"] == 108_480
    assert table.loc["sing", "training_eflop"] == pytest.approx(108_480 * 1e13 / 1e18)
    # 4 x P100 for 52 h
    assert table.loc["sing", "implied_utilisation"] == pytest.approx(108_480 * 1e13 / (4 * 9.3e12 * 52 * 3600))


def test_figure_says_replicas_and_plots_only_what_was_measured():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from waveflow.analysis import figures

    nan = math.nan
    table = pd.DataFrame(
        {
            "model": ["samplernn", "gansynth"],
            "implied_utilisation": [nan, 0.39],
            "implied_utilisation_naive": [nan, 0.91],
            "inference_gflop_per_audio_s": [256.0, 7.2],
            "measured_here": [True, False],
            "j_per_audio_s": [30.0, nan],
            "j_per_audio_s_low": [10.0, nan],
            "j_per_audio_s_high": [90.0, nan],
            "j_per_audio_s_label": ["extrapolated from a 0.0025 s clip (estimated:tdp×utilisation)", nan],
            "best_batch": [2, nan],
            "j_per_audio_s_best": [20.0, nan],
            "j_per_audio_s_low_best": [5.0, nan],
            "j_per_audio_s_high_best": [60.0, nan],
        }
    )
    table = table.assign(
        implied_utilisation_other_variant=[nan, 0.43],
        gpu_other_variant=["", "Tesla V100 PCIe (16/32 GB)"],
        form_factor_other_variant=["", "PCIe"],
        fp32_peak_tflops_other_variant=[nan, 14.0],
    )
    fig, data = figures.plot_zoo_costs(table, note=REPLICA_NOTE, bands=(0.05, 0.5, 0.8))
    assert REPLICA_NOTE in fig._suptitle.get_text()
    ax1, _, ax3 = fig.axes
    assert "estimated:tdp×utilisation" in ax3.get_ylabel()  # the energy axis names its method
    # the title says how the energies were obtained: estimated, and extrapolated from a clip
    assert ax3.get_title() == "Inference energy estimated here,\nextrapolated from a 0.0025 s clip"
    assert ax1.get_ylabel() == "implied utilisation of fp32 peak (%)"
    legend = [t.get_text() for t in ax1.get_legend().get_texts()]
    assert legend[:3] == ["comfortable (5–50 %)", "demanding (50–80 %)", "implausible (> 80 %)"]
    assert any("other form factor" in t for t in legend)
    # the best-batch label sits beside its diamond, not on it
    (b2,) = [t for t in ax3.texts if t.get_text() == "b=2"]
    assert b2.xy[0] >= 0.3 and b2.get_ha() == "left"
    other = data.set_index(["model", "quantity"]).loc[("gansynth", "implied_utilisation_other_variant")]
    assert other.value == 0.43 and "if Tesla V100 PCIe" in other.method
    assert list(data.columns[:6]) == ["model", "quantity", "value", "low", "high", "method"]
    measured = data[data.quantity.str.startswith("j_per_audio_s")]
    assert measured.model.unique().tolist() == ["samplernn"]
    best = measured.set_index("quantity").loc["j_per_audio_s_best_batch"]
    assert (best.value, best.low, best.high, best.batch) == (20.0, 5.0, 60.0, 2)
    assert (data.note == REPLICA_NOTE).all()
    plt.close(fig)
