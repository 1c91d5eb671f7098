"""Training: smoke test of the real entry point, exact resume, atomic checkpoints, divergence."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from waveflow.cli import main
from waveflow.model import WaveFlowConfig, load_checkpoint, save_checkpoint
from waveflow.paths import LJSPEECH_MINI
from waveflow.train import TrainConfig, TrainingDiverged, read_metrics, train

TINY = WaveFlowConfig(n_height=8, res_channels=8, n_flows=2, n_layers=2, permutation="reverse")


def tiny_run(out, steps, **kw) -> TrainConfig:
    opts = dict(
        model=TINY,
        data=str(LJSPEECH_MINI),
        out=str(out),
        steps=steps,
        batch_size=2,
        segment=2048,
        val_every=0,
        val_clips=1,
        val_samples=4096,
        device="cpu",
        seed=3,
    )
    opts.update(kw)
    return TrainConfig(**opts)


def test_train_cli_smoke_on_bundled_data(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--config",
            "WF1",
            "--res-channels",
            "8",
            "--n-layers",
            "2",
            "--n-flows",
            "2",
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--segment",
            "2048",
            "--val-every",
            "2",
            "--val-clips",
            "1",
            "--val-samples",
            "4096",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    assert "step 3: train loss" in capsys.readouterr().out
    train_records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in train_records] == [1, 2, 3]
    assert all({"loss", "samples_per_s", "wall"} <= r.keys() for r in train_records)
    val = read_metrics(out / "metrics.jsonl", kind="validation")
    assert [r["step"] for r in val] == [2, 3] and all(math.isfinite(r["val_bits"]) for r in val)
    model, info = load_checkpoint(out / "checkpoints" / "last.pt")
    assert info["step"] == 3 and model.config.res_channels == 8


def test_resumed_run_reproduces_the_uninterrupted_loss_sequence(tmp_path):
    full = train(tiny_run(tmp_path / "full", 6), progress=False)
    train(tiny_run(tmp_path / "split", 3), progress=False)  # "interrupted" after step 3
    resumed = train(tiny_run(tmp_path / "split", 6), resume=True, progress=False)
    a = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    b = [r["loss"] for r in read_metrics(tmp_path / "split" / "metrics.jsonl")]
    assert len(a) == 6 and a == b  # bit-for-bit equal losses
    ma, _ = load_checkpoint(full.last_checkpoint)
    mb, _ = load_checkpoint(resumed.last_checkpoint)
    for (n, p), (_, q) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(p, q), n


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
    train(tiny_run(tmp_path / "r", 1), progress=False)
    with pytest.raises(ValueError, match="already holds a run.*--resume"):
        train(tiny_run(tmp_path / "r", 2), progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_run(tmp_path / "fresh", 2), resume=True, progress=False)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    cfg = tiny_run(tmp_path / "r", 2, val_every=1)
    train(cfg, progress=False)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    # Poison the weights of the saved run so the next step's loss is NaN.
    payload = torch.load(last, weights_only=False)
    key = next(k for k in payload["model"] if k.endswith("out.bias"))
    payload["model"][key] = torch.full_like(payload["model"][key], float("nan"))
    save_checkpoint(last, *_model_from(payload), step=payload["step"])
    poisoned = last.read_bytes()
    with pytest.raises(TrainingDiverged, match=r"diverged at step 3: the loss is nan.*last good checkpoint"):
        train(tiny_run(tmp_path / "r", 4, val_every=1), resume=True, progress=False)
    assert last.read_bytes() == poisoned != before  # untouched by the failed run


def _model_from(payload):
    from waveflow.model import WaveFlow

    model = WaveFlow(WaveFlowConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["model"])
    opt = torch.optim.Adam(model.parameters())
    return model, opt


def test_checkpoint_is_never_half_written(tmp_path, monkeypatch):
    model, opt = _model_from({"config": TINY.to_dict(), "model": __import__("waveflow").WaveFlow(TINY).state_dict()})
    path = save_checkpoint(tmp_path / "last.pt", model, opt, step=1)
    good = path.read_bytes()

    def crash(obj, fh, *a, **k):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, opt, step=2)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["last.pt"]  # the temp file is cleaned up


def test_training_reduces_validation_nll(tmp_path):
    cfg = tiny_run(tmp_path / "r", 40, val_every=40, lr=2e-3, batch_size=4, segment=4096, val_samples=22016)
    cfg.model = WaveFlowConfig(n_height=8, res_channels=16, n_flows=4, n_layers=3, permutation="reverse")
    from waveflow.data import LJSpeech
    from waveflow.model import WaveFlow
    from waveflow.train import validation_nll

    torch.manual_seed(cfg.seed)
    before = validation_nll(
        WaveFlow(cfg.model), LJSpeech(cfg.data, "validation", segment=4096, n_height=8), cfg.val_clips, cfg.val_samples
    )
    result = train(cfg, progress=False)
    print(f"validation NLL {before:.3f} -> {result.final_val_nll:.3f} nats/sample")
    assert result.final_val_nll < before - 0.3, (before, result.final_val_nll)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match=r"segment: 2050 is not a multiple of h=8"):
        tiny_run("x", 1, segment=2050)
    with pytest.raises(ValueError, match=r"TrainConfig.steps"):
        tiny_run("x", 0)


def test_run_json_records_the_options(tmp_path):
    train(tiny_run(tmp_path / "r", 1), progress=False)
    saved = json.loads((tmp_path / "r" / "run.json").read_text())
    assert saved["model"]["res_channels"] == 8 and saved["batch_size"] == 2
    assert TrainConfig.from_dict(saved).model == TINY


def test_resume_with_different_options_is_refused(tmp_path):
    train(tiny_run(tmp_path / "r", 1), progress=False)
    with pytest.raises(ValueError, match=r"options differ.*seed: 3 -> 4"):
        train(tiny_run(tmp_path / "r", 2, seed=4), resume=True, progress=False)


def test_metrics_log_survives_a_partial_last_line(tmp_path):
    from waveflow.train import append_metrics

    path = tmp_path / "metrics.jsonl"
    append_metrics(path, {"kind": "train", "step": 1, "loss": 1.0})
    with open(path, "a") as fh:
        fh.write('{"kind": "train", "step": 2, "lo')  # crash mid-write
    append_metrics(path, {"kind": "resume", "step": 1})
    append_metrics(path, {"kind": "train", "step": 2, "loss": 0.5})
    assert [r["loss"] for r in read_metrics(path)] == [1.0, 0.5]
    assert read_metrics(path, kind="resume") == [{"kind": "resume", "step": 1}]


# ----------------------------------------------------------------------------------------------
# the distributed code path, in one process (the torchrun runs are in tests/test_distributed.py)
def test_a_single_process_run_records_world_size_1_and_one_merged_energy_record(tmp_path):
    from waveflow.energy import read_records

    result = train(tiny_run(tmp_path / "r", 2), progress=False, energy=True, cpu_tdp_w=100.0)
    assert result.world_size == 1 and result.energy is not None and result.energy.missing_ranks == []
    assert read_checkpoint_extra(result.last_checkpoint)["world_size"] == 1
    assert read_metrics(tmp_path / "r" / "metrics.jsonl", kind="start")[0]["world_size"] == 1
    log = read_records(tmp_path / "r" / "energy_log.csv")
    assert len(log) == 1 and log.loc[0, "energy_j"] == pytest.approx(result.energy.energy_j)
    devices = (tmp_path / "r" / "energy_log_devices.csv").read_text().splitlines()
    assert len(devices) == 2 and ",0,0,0," in devices[1] and ",cpu," in devices[1]  # rank 0, node 0, local rank 0


def read_checkpoint_extra(path):
    from waveflow.model import read_checkpoint

    return read_checkpoint(path)["extra"]


def test_the_stop_hook_ends_the_run_after_the_agreed_step(tmp_path):
    seen = []

    def budget_spent(step: int) -> bool:
        seen.append(step)
        return step == 3

    result = train(tiny_run(tmp_path / "r", 10), progress=False, should_stop=budget_spent)
    assert result.step == 3 and seen == [1, 2, 3]
    _, info = load_checkpoint(result.last_checkpoint)
    assert info["step"] == 3  # the stopped run is checkpointed, so it can resume


def test_help_states_the_global_batch_and_learning_rate_rule(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "global clips per step" in text and "The learning rate is never rescaled" in text


def test_a_global_batch_the_world_size_does_not_divide_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    rc = main(["train", "--batch-size", "6", "--device", "cpu", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == (
        "waveflow train: error: --batch-size 6 is not divisible by the world size 4; expected a multiple of 4 "
        "(the global batch is split evenly over the ranks)"
    )


@pytest.mark.requires_gpu
def test_cuda_resume_is_bit_exact_with_deterministic_kernels(tmp_path):
    cfg = dict(device="cuda", batch_size=4, segment=4096)
    full = train(tiny_run(tmp_path / "full", 6, **cfg), progress=False, deterministic=True)
    train(tiny_run(tmp_path / "split", 3, **cfg), progress=False, deterministic=True)
    resumed = train(tiny_run(tmp_path / "split", 6, **cfg), resume=True, progress=False, deterministic=True)
    assert [h["loss"] for h in full.history][3:] == [h["loss"] for h in resumed.history]
    ma, _ = load_checkpoint(full.last_checkpoint)
    mb, _ = load_checkpoint(resumed.last_checkpoint)
    for (n, p), (_, q) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(p, q), n


# ----------------------------------------------------------------------------------------------
# budgets and quality marks (issue 10)
def test_energy_budget_stops_training_and_resume_counts_what_was_spent_before(tmp_path):
    out = tmp_path / "r"
    first = train(tiny_run(out, 2), progress=False, energy=True)
    before = first.spent["energy_j"]
    assert first.stopped_by == "steps" and before > 0
    _, info = load_checkpoint(first.last_checkpoint)
    assert info["extra"]["spent"]["energy_j"] == pytest.approx(before)
    # A budget below what was already spent: the resumed run stops after its first step, and its
    # total starts from the checkpoint's joules rather than from zero.
    resumed = train(tiny_run(out, 50, energy_budget_j=before / 2), resume=True, progress=False, energy=True)
    assert resumed.step == 3 and resumed.stopped_by.startswith("energy budget")
    assert resumed.spent["energy_j"] > before
    stops = read_metrics(out / "metrics.jsonl", kind="stop")
    assert [r["step"] for r in stops] == [3]
    _, info = load_checkpoint(resumed.last_checkpoint)
    assert info["step"] == 3 and info["extra"]["spent"]["energy_j"] == pytest.approx(resumed.spent["energy_j"])


def test_time_budget_stops_training_and_resume_keeps_it(tmp_path):
    out = tmp_path / "r"
    first = train(tiny_run(out, 50, time_budget_s=1e-6), progress=False)
    assert first.step == 1 and first.stopped_by.startswith("time budget")
    assert load_checkpoint(first.last_checkpoint)[1]["step"] == 1
    seconds = first.spent["wall_s"]
    resumed = train(tiny_run(out, 50, time_budget_s=seconds / 2), resume=True, progress=False)
    assert resumed.step == 2 and resumed.spent["wall_s"] > seconds


def test_marks_record_step_examples_training_energy_and_heldout_nll(tmp_path):
    out = tmp_path / "r"
    result = train(tiny_run(out, 5, eval_every=2), progress=False, energy=True)
    marks = read_metrics(out / "metrics.jsonl", kind="mark")
    assert [m["step"] for m in marks] == [m["step"] for m in result.marks] == [2, 4, 5]
    assert [m["examples"] for m in marks] == [4, 8, 10]
    energies = [m["energy_j"] for m in marks]
    assert energies == sorted(energies) and energies[0] > 0
    for m in marks:
        assert math.isfinite(m["heldout_nll_bits"]) and m["wall_s"] > 0
        assert m["energy_method"].startswith(("measured:", "estimated:"))
        if m["energy_method"].startswith("estimated:"):
            assert m["energy_j_low"] <= m["energy_j"] <= m["energy_j_high"]
    # Evaluation is left out of the training energy: the last mark is below the run's metered total.
    assert marks[-1]["energy_j"] < result.energy.energy_j


def test_marks_do_not_perturb_the_training_rng_stream(tmp_path):
    plain = train(tiny_run(tmp_path / "plain", 4), progress=False)
    marked = train(tiny_run(tmp_path / "marked", 4, eval_every=1), progress=False)
    assert len(marked.marks) == 4
    ma, _ = load_checkpoint(plain.last_checkpoint)
    mb, _ = load_checkpoint(marked.last_checkpoint)
    for (n, p), (_, q) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(p, q), n


def test_eval_crop_longer_than_every_heldout_clip_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no clip of the validation split .* at least"):
        train(tiny_run(tmp_path / "r", 2, eval_every=1, val_samples=10**8), progress=False)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_energy_budget_needs_a_metered_run(tmp_path):
    with pytest.raises(ValueError, match="--energy-budget: the run is not metered"):
        train(tiny_run(tmp_path / "r", 2, energy_budget_j=1.0), progress=False)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--energy-budget", "0"], "--energy-budget: expected a positive number, got '0'"),
        (["--energy-budget", "-3"], "--energy-budget: expected a positive number, got '-3'"),
        (["--energy-budget", "lots"], "--energy-budget: expected a positive number, got 'lots'"),
        (["--time-budget", "nan"], "--time-budget: expected a positive number, got 'nan'"),
        (["--eval-every", "0"], "--eval-every: expected a positive number of steps, got 0"),
    ],
)
def test_bad_budget_and_mark_options_give_one_line_errors(tmp_path, capsys, args, message):
    rc = main(["train", "--steps", "1", "--out", str(tmp_path / "r"), "--device", "cpu", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
