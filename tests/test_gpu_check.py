"""The GPU check's logic, run on the CPU in quick mode: every part, its rows, its time limits."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from waveflow.cli import main
from waveflow.perf import gpu_check as gc


def settings(tmp_path) -> gc.Settings:
    return gc.Settings(quick=True, device="cpu", work=str(tmp_path / "work"), energy_log=str(tmp_path / "energy.csv"))


@pytest.mark.filterwarnings("ignore:EnergyMeter. generic brand")
def test_quick_check_runs_every_part_on_the_cpu_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "gpu_check.csv"
    rows = gc.run_check(settings(tmp_path), isolate=False, csv_path=out)
    status = {(r["part"], r["item"]): r["status"] for r in rows}
    assert status[("tests", "pytest -m requires_gpu")] == "skipped"  # no GPU: every requires_gpu test skips
    assert status[("nvml", "counter vs 10 Hz power")] == "skipped"
    assert status[("ddp", "DDP step")] == "skipped"
    for config in ("WF2", "WF4"):
        e_gen = [r for r in rows if r["part"] == f"e_gen_{config}"]
        graphs = [(r["item"], r["status"]) for r in e_gen if "CUDA graphs" in r["item"]]
        assert graphs == [(f"E_gen {config} batch 1, CUDA graphs", "skipped")]  # needs a GPU; says so
        checks = [r for r in e_gen if "TDP x time" in r["item"]]
        # on a CPU nothing is measured, so the paper's TDP x time check says it has nothing to compare
        assert [(r["item"], r["status"]) for r in checks] == [
            (f"E_gen {config} batch 1: measured / TDP x time", "skipped")
        ]
        e_gen = [r for r in e_gen if "CUDA graphs" not in r["item"] and "TDP x time" not in r["item"]]
        assert [r["item"] for r in e_gen][:2] == [f"E_gen {config} batch 1", f"E_gen {config} batch 2"]
        assert all(r["status"] == "ok" and r["value"] > 0 for r in e_gen)
        assert e_gen[-1]["value"] == min(r["value"] for r in e_gen[:2])  # the energy-optimal batch
        assert e_gen[0]["paper"] > 0 and "estimated" in e_gen[0]["detail"]
    train = {r["item"]: r for r in rows if r["part"] == "e_train"}
    assert train["E_train WF2 extrapolated to 3,000,000 steps"]["value"] > 0
    assert train["E_train WF2 steps: measured / TDP x time"]["status"] == "skipped"
    vocoders = {r["item"]: r for r in rows if r["part"] == "vocoders"}
    assert set(vocoders) == {"vocoder hifigan-v1: J per audio second", "vocoder melgan-small: J per audio second"}
    assert all(r["status"] == "ok" and r["value"] > 0 and "x hifigan-v1" in r["detail"] for r in vocoders.values())
    assert "1 [1, 1] x hifigan-v1" in vocoders["vocoder hifigan-v1: J per audio second"]["detail"]
    resume = next(r for r in rows if r["part"] == "resume")
    assert resume["status"] == "ok" and resume["value"] == 0.0

    with open(out, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == gc.COLUMNS and len(table) == len(rows)
    assert all(float(r["seconds"]) >= 0 for r in table[1:])
    text = (tmp_path / "gpu_check_summary.txt").read_text()
    assert "every part that ran is ok" in text and "(paper, NVIDIA TITAN V: 437.6)" in text
    printed = capsys.readouterr().out
    assert "[gpu-check] resume: ok: resume 3+3 vs 6 steps" in printed


def test_a_part_runs_in_its_own_process_and_is_stopped_at_its_limit(tmp_path):
    s = settings(tmp_path)
    assert gc.run_part_isolated("nvml", s, timeout=120)[0]["status"] == "skipped"  # rows come back from the child
    stopped = gc.run_part_isolated("e_train", s, timeout=1)
    assert stopped[-1]["status"] == "timeout" and "1 s limit" in stopped[-1]["detail"]


def test_a_failing_part_is_a_row_after_the_rows_it_made(monkeypatch, tmp_path):
    def flaky(s):
        yield gc.row("resume", "first number", "ok", 1.0)
        raise RuntimeError("CUDA error: an illegal memory access\nwas encountered")

    monkeypatch.setitem(gc.PART_FUNCTIONS, "resume", flaky)
    seen = []
    rows = gc.run_part_inline("resume", settings(tmp_path), emit=lambda r: seen.append(len(r)))
    assert [r["status"] for r in rows] == ["ok", "failed"] and seen == [1]
    assert rows[1]["detail"] == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert math.isnan(rows[1]["value"])
    with pytest.raises(ValueError, match=r"unknown part\(s\) \['gpu'\]; expected some of tests"):
        gc.run_check(settings(tmp_path), parts=("gpu",), isolate=False, csv_path=tmp_path / "x.csv")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_the_check_says_so_in_one_line_and_exits_0(capsys):
    assert main(["gpu-check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpu-check: no CUDA GPU visible to torch") and out.count("\n") == 1
    assert main(["gpu-check", "--device", "cpu"]) == 2  # the full check on a CPU is refused by name
