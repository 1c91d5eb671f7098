"""Bundled carbon intensities, PUE presets and the kWh → gCO2e arithmetic."""

from __future__ import annotations

import dataclasses

import pytest

from waveflow.energy.carbon import (
    DEFAULT_INTENSITY_CODE,
    DEFAULT_PUE,
    PUE_PRESETS,
    Intensity,
    Pue,
    carbon_intensity,
    co2e_grams,
    co2e_table,
    load_intensities,
    resolve_pue,
)


def test_reference_values():
    assert carbon_intensity("WORLD") == Intensity(
        "WORLD", "World average", 445.0, 2024, carbon_intensity("world").source
    )
    assert carbon_intensity("eu28").g_per_kwh == 294.2 and carbon_intensity("EU28").year == 2017
    assert carbon_intensity("fr").g_per_kwh == pytest.approx(44.18, abs=0.01)  # carbontracker's FR value
    assert DEFAULT_INTENSITY_CODE == "WORLD" and carbon_intensity(DEFAULT_INTENSITY_CODE).g_per_kwh == 445


def test_table_is_complete_and_sourced():
    t = load_intensities()
    assert 20 <= len(t) <= 50 and t.code.is_unique
    assert (t.source.str.len() > 20).all() and t.year.between(2015, 2025).all()
    assert {"US", "CN", "DE", "FR", "GB", "IN", "JP", "SE"} <= set(t.code)


def test_unknown_code_lists_choices():
    with pytest.raises(ValueError, match=r"unknown code 'XX'.*'WORLD'"):
        carbon_intensity("XX")


def test_dataclasses_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        carbon_intensity("FR").g_per_kwh = 0


def test_pue_presets():
    assert PUE_PRESETS["none"].value == 1.0 and DEFAULT_PUE == "none"
    assert PUE_PRESETS["uptime-2023"].value == 1.58
    assert PUE_PRESETS["carbontracker-2020"].value == 1.59
    assert all(isinstance(p, Pue) and p.source for p in PUE_PRESETS.values())


@pytest.mark.parametrize("given, value", [("none", 1.0), ("Uptime-2023", 1.58), (1.2, 1.2), ("1.3", 1.3), (1, 1.0)])
def test_resolve_pue(given, value):
    assert resolve_pue(given).value == value


@pytest.mark.parametrize("bad", [0.9, "fast", float("nan"), True, None])
def test_resolve_pue_rejects(bad):
    with pytest.raises(ValueError, match="resolve_pue"):
        resolve_pue(bad)


def test_co2e_grams():
    assert co2e_grams(2.0, 100.0) == 200.0
    assert co2e_grams(2.0, carbon_intensity("WORLD"), pue=1.5) == pytest.approx(1335.0)
    assert co2e_grams(1.0, "EU28", "carbontracker-2020") == pytest.approx(294.2 * 1.59)
    for args in [(-1, 100), (float("inf"), 100), (1, -5), (1, None)]:
        with pytest.raises(ValueError, match="co2e_grams"):
            co2e_grams(*args)


def test_co2e_table_is_tidy():
    import pandas as pd

    kwh = pd.Series({"a": 1.0, "b": 2.0}).rename_axis("model")
    t = co2e_table(kwh, ["WORLD", "FR"], ["none", 1.5])
    assert len(t) == 8 and set(t.columns) >= {"model", "intensity", "pue", "kg_co2e"}
    row = t[(t.model == "b") & (t.intensity == "WORLD") & (t.pue == 1.5)].iloc[0]
    assert row.kg_co2e == pytest.approx(2 * 1.5 * 445 / 1000)


def test_uptime_2024_preset_has_its_source():
    p = resolve_pue("uptime-2024")
    assert p.value == 1.56 and "Uptime Institute" in p.source and "2024" in p.source
