"""What every figure of an energy record is counted in and belongs to: joule conversions and kinds.

The record, its JSON form and its text all state energy in joules per component kind; these few
names are the vocabulary they share, kept below all three so that none imports another for them.
"""

from __future__ import annotations

__all__ = ["J_PER_KWH", "J_PER_WH", "KINDS", "WALL"]

#: Joules in a kilowatt-hour: the one conversion factor between the meter's J and the paper's kWh/Wh.
J_PER_KWH = 3.6e6
#: Joules in a watt-hour, for the per-clip figures that are quoted in Wh.
J_PER_WH = 3.6e3

#: Component kinds with a column group in the log, in order. ``wall`` is a check on the others (a
#: wall meter measures the same energy from the socket), never added to the total.
KINDS = ("gpu", "cpu", "dram")
WALL = "wall"
