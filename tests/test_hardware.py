"""GPU table, name lookup, the Table 1 energy formula, and Table 1 recomputed equal to the paper."""

from __future__ import annotations

import pandas as pd
import pytest

from waveflow.energy.hardware import (
    GPUS_CSV,
    SING_MEASURED_KWH,
    Gpu,
    estimate_training_energy,
    load_gpus,
    load_table1,
    lookup_gpu,
    normalise_gpu_name,
    recompute_table1,
)

# The paper's Table 1, as printed (kWh).
PAPER_TABLE1 = {"FloWaveNet": 81.6, "GANSynth": 32.4, "SampleRNN": 42, "SING": 52, "WaveGAN": 24}


def test_recomputed_table1_equals_the_paper_exactly():
    t = recompute_table1()
    assert dict(zip(t.model, t.energy_kwh)) == PAPER_TABLE1
    assert t.matches.all()
    assert (t.tdp_w == t.power_w_paper).all()  # our resolved TDPs are the paper's Power column


def test_bundled_table1_is_the_printed_one():
    t = load_table1()
    assert dict(zip(t.model, t.energy_kwh)) == PAPER_TABLE1
    assert t.hours.tolist() == [272, 108, 168, 52, 96]


def test_gpu_table_has_the_required_variants_with_sources():
    gpus = load_gpus()
    for key in (
        "titan-x-maxwell",
        "titan-x-pascal",
        "titan-v",
        "p100-pcie",
        "p100-sxm2",
        "v100-pcie",
        "v100-sxm2",
        "a100-pcie-40gb",
        "a100-sxm4",
        "h100-pcie",
        "h100-sxm",
        "rtx-2080-ti",
        "rtx-3090",
    ):
        assert key in set(gpus.key)
    assert (gpus.source.str.len() > 10).all()
    assert gpus.key.is_unique


@pytest.mark.parametrize(
    "name, key, watts",
    [
        ("V100", "v100-sxm2", 300),
        ("Tesla V100", "v100-sxm2", 300),
        ("v100", "v100-sxm2", 300),
        ("Tesla V100-PCIE-16GB", "v100-pcie", 250),
        ("TITAN X", "titan-x-maxwell", 250),
        ("NVIDIA TITAN X (Pascal)", "titan-x-pascal", 250),
        ("P100", "p100-pcie", 250),
        ("Tesla P100-SXM2-16GB", "p100-sxm2", 300),
        ("TITAN V", "titan-v", 250),
        ("A100", "a100-sxm4", 400),
        ("NVIDIA A100-PCIE-40GB", "a100-pcie-40gb", 250),
        ("H100", "h100-sxm", 700),
        ("NVIDIA H100 PCIe", "h100-pcie", 350),
        ("NVIDIA GeForce RTX 3090", "rtx-3090", 350),
        ("GeForce RTX 2080 Ti", "rtx-2080-ti", 250),
    ],
)
def test_lookup_resolves_common_names(name, key, watts):
    gpu = lookup_gpu(name)
    assert (gpu.key, gpu.tdp_w) == (key, watts)


def test_calculator_differences_are_recorded():
    # energy-tools.md §5: the ML CO2 calculator's V100 rows look swapped against NVIDIA.
    assert lookup_gpu("V100 PCIe").mlco2_tdp_w == 300 and lookup_gpu("V100 PCIe").tdp_w == 250
    assert "calculator" in lookup_gpu("V100 PCIe").note


def test_unknown_gpu_lists_the_known_names():
    with pytest.raises(ValueError, match=r"unknown GPU 'K80'.*TITAN V"):
        lookup_gpu("K80")
    with pytest.raises(ValueError, match="GPU name"):
        lookup_gpu("  ")


def test_normalise_ignores_vendor_words_and_punctuation():
    assert normalise_gpu_name("NVIDIA GeForce GTX TITAN X") == normalise_gpu_name("titan-x") == "titanx"


def test_estimate_formula_and_inputs():
    assert estimate_training_energy("P100", 4, 52) == 52
    assert estimate_training_energy(Gpu("x", "x", 200.0), 2, 10, pue=1.5) == pytest.approx(6.0)
    assert estimate_training_energy(100, 1, 0) == 0
    for kwargs, msg in [
        ({"n_gpus": 0}, "n_gpus"),
        ({"n_gpus": 1.5}, "n_gpus"),
        ({"hours": -1}, "hours"),
        ({"hours": float("nan")}, "hours"),
        ({"pue": 0.9}, "pue"),
    ]:
        args = {"gpu": "V100", "n_gpus": 1, "hours": 1.0, **kwargs}
        with pytest.raises(ValueError, match=msg):
            estimate_training_energy(**args)
    with pytest.raises(ValueError, match="gpu must be"):
        estimate_training_energy(-5, 1, 1)


def test_pue_scales_recomputed_table():
    t = recompute_table1(pue=1.59)
    assert t.energy_kwh.tolist() == pytest.approx([v * 1.59 for v in PAPER_TABLE1.values()])


def test_sing_check_constant_is_the_papers():
    assert SING_MEASURED_KWH == 64.8
    assert SING_MEASURED_KWH / PAPER_TABLE1["SING"] == pytest.approx(1.246, abs=1e-3)


def test_bad_gpu_csv_is_rejected(tmp_path):
    src = pd.read_csv(GPUS_CSV)
    dup = pd.concat([src, src.iloc[[0]].assign(key="other")])
    path = tmp_path / "gpus.csv"
    dup.to_csv(path, index=False)
    with pytest.raises(ValueError, match="resolves to both"):
        load_gpus(path)


def test_calculator_column_matches_the_ml_co2_table():
    """The ML CO2 calculator's own values (mlco2/impact data/gpus.csv, d0d3ee5), including the rows it does have
    for cards we list under other names (fidelity review D13)."""
    calculator = {"k40": 245, "gtx-1080-ti": 250, "titan-rtx": 280, "titan-v": 250, "v100-pcie": 300, "h100-sxm": 700}
    gpus = load_gpus().set_index("key")
    assert {k: gpus.loc[k, "mlco2_tdp_w"] for k in calculator} == calculator
    assert gpus.loc["k40", "tdp_w"] == 235 and "K40c" in gpus.loc["k40", "note"]
    for key in ("p100-sxm2", "h100-pcie", "h200-sxm"):  # no such row in the calculator
        assert pd.isna(gpus.loc[key, "mlco2_tdp_w"])
