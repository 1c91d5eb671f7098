"""Energy and carbon accounting: joules per component with the method behind each number.

Free of torch, the model and the data: point :class:`EnergyMeter` at any block of code (with
``meter.window(name)`` for its parts and ``meter.read()`` for the energy so far, each a
:class:`Measurement`), decorate a function with :func:`measure_energy`, or run
``python -m waveflow energy [--json] -- CMD``. Readers (RAPL, NVML, the CPU estimate) live in
:mod:`~waveflow.energy.readers`, the record in :mod:`~waveflow.energy.record`, its CSV log in
:mod:`~waveflow.energy.log`, grid intensities and PUE in :mod:`~waveflow.energy.carbon`, GPU TDPs and Table 1 in
:mod:`~waveflow.energy.hardware`, the paper's TDP × time estimate held against each measured device in
:mod:`~waveflow.energy.tdp_check`, and the paper's tool in :mod:`~waveflow.energy.carbontracking`.
"""

from .carbontracking import CarbontrackerResult, CarbontrackerSession
from .decorator import measure_energy
from .log import DEFAULT_LOG, RECORD_COLUMNS, append_record, read_records
from .measurement import Measurement
from .merge import MergedEnergy, RankEnergy, merge_records  # noqa: F401  (public; see merge.py)
from .meter import EnergyMeter
from .readers import EnergyReader
from .record import J_PER_KWH, J_PER_WH, ComponentEnergy, EnergyRecord, Interval, summary

__all__ = [
    "DEFAULT_LOG",
    "J_PER_KWH",
    "J_PER_WH",
    "RECORD_COLUMNS",
    "CarbontrackerResult",
    "CarbontrackerSession",
    "ComponentEnergy",
    "EnergyMeter",
    "EnergyReader",
    "EnergyRecord",
    "Interval",
    "Measurement",
    "append_record",
    "measure_energy",
    "read_records",
    "summary",
]
