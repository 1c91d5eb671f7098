"""Tables and figures: the survey, the Pareto analysis, and every plot of the notebooks (no torch).

:mod:`~waveflow.analysis.survey`, :mod:`~.pareto` and :mod:`~.curves` (quality against energy) are
pure pandas/numpy libraries usable on anyone's measurements, with their own column names;
:mod:`~.command` is ``waveflow pareto`` on any results CSV; :mod:`~.figures` draws; :mod:`~.plotting`
holds the house style and the atomic writers of figures and tables.
"""

from .plotting import STYLE, save_figure, save_figure_as, save_table, set_style

__all__ = ["STYLE", "save_figure", "save_figure_as", "save_table", "set_style"]
