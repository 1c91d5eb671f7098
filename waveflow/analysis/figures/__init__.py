"""Every figure of the notebooks: the survey (Fig. 1), Table 1, CO2 by grid, E_train and E_gen
measured next to the paper's, the Table 1 models on this machine, the Pareto fronts (Fig. 2), and
quality against training energy.

Plotting lives here and nowhere else, so the domains stay free of matplotlib:
:mod:`waveflow.analysis.survey`, :mod:`waveflow.analysis.pareto`, :mod:`waveflow.energy` and the
experiments compute the tables, and these functions draw them. One module per notebook:
:mod:`~.survey` (01), :mod:`~.table1` (02), :mod:`~.energy` (03 and 04), :mod:`~.quality` (05),
:mod:`~.pareto` (06) and :mod:`~.vocoders` (07), with the colours, labels and axis helpers they share in
:mod:`~.common`.
Functions taking ``ax`` draw into a given axes; the others return a figure, and each
``*_figure_data`` returns the tidy numbers behind it for :func:`~waveflow.analysis.save_figure`.

Labelling rules, kept by every energy plot: bars of extrapolated quantities are hatched; every
energy **axis** names how its numbers were obtained (not just a neighbouring panel); an estimated
energy is drawn with its interval as an error bar (low and high bound from the meter, carried
through extrapolation); and the paper's E_train is labelled a Carbontracker *prediction*, with its
PUE, not a measurement.
"""

from .common import (
    OURS_COLOR,
    PAPER_COLOR,
    PAPER_E_GEN,
    PAPER_E_GEN_METHOD,
    PAPER_E_TRAIN,
    PAPER_E_TRAIN_METHOD,
    short_method,
)
from .energy import inference_figure_data, plot_inference_energy, plot_training_energy, training_figure_data
from .pareto import plot_front, plot_measured_pareto, plot_pareto, plot_pareto_spaces, save_pareto_figure
from .quality import energy_to_quality_figure_data, plot_energy_to_quality
from .survey import plot_counts
from .table1 import plot_co2e_by_grid, plot_table1, plot_zoo_costs, zoo_costs_figure_data
from .vocoders import plot_vocoder_energy, vocoder_figure_data

__all__ = [
    "OURS_COLOR",
    "PAPER_COLOR",
    "PAPER_E_GEN",
    "PAPER_E_GEN_METHOD",
    "PAPER_E_TRAIN",
    "PAPER_E_TRAIN_METHOD",
    "energy_to_quality_figure_data",
    "inference_figure_data",
    "plot_co2e_by_grid",
    "plot_counts",
    "plot_energy_to_quality",
    "plot_front",
    "plot_inference_energy",
    "plot_measured_pareto",
    "plot_pareto",
    "plot_pareto_spaces",
    "plot_table1",
    "plot_vocoder_energy",
    "plot_training_energy",
    "plot_zoo_costs",
    "save_pareto_figure",
    "short_method",
    "training_figure_data",
    "vocoder_figure_data",
    "zoo_costs_figure_data",
]
