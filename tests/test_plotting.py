"""The figure helper writes three consistent files and refuses bad names/data."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from waveflow.analysis import save_figure


def test_save_figure_writes_pdf_png_and_csv(tmp_path):
    fig, ax = plt.subplots()
    data = pd.DataFrame({"x": [1, 2], "y": [3.0, 4.5]})
    ax.plot(data.x, data.y)
    paths = save_figure(fig, "99_test", data, directory=tmp_path)
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    assert paths["png"].read_bytes().startswith(b"\x89PNG")
    assert pd.read_csv(paths["csv"]).equals(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["99_test.csv", "99_test.pdf", "99_test.png"]


@pytest.mark.parametrize("name", ["", "a/b", "x.png"])
def test_save_figure_rejects_bad_names(tmp_path, name):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="name"):
        save_figure(fig, name, pd.DataFrame({"x": [1]}), directory=tmp_path)


def test_save_figure_needs_the_plotted_numbers(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        save_figure(fig, "99_x", pd.DataFrame(), directory=tmp_path)
