"""Which models of a CPU family this machine can be, from the instruction sets it reports.

A VM often reports a bare brand (``AMD EPYC``, ``Intel(R) Xeon(R) Processor``), and the estimate then
takes its TDP and per-thread power from every model of that family in the tables, generations the
host cannot be included: a guest that shows AVX2 but no AVX-512 does not run on a Zen 4 EPYC, one
that shows AMX runs on a Sapphire Rapids or later Xeon. :func:`narrow_family` keeps the models
whose instruction sets agree with the ``/proc/cpuinfo`` flags.

The rule, from the model numbers of the tables (``cpu_power.csv``, ``cpu_threads.csv``):

* **AMD EPYC**: the fourth character of the model number is the Zen generation (7\\ *xx*\\ 1 Naples
  = Zen 1, 7\\ *xx*\\ 2 Rome = Zen 2, 7\\ *xx*\\ 3 Milan = Zen 3, 9\\ *xx*\\ 4 Genoa and 8\\ *xx*\\ 4 Siena
  and 4\\ *xx*\\ 4 = Zen 4, 9\\ *xx*\\ 5 Turin = Zen 5; letters count as characters: 7B12, 72F3,
  7R13). Zen 1-3 lack AVX-512, Zen 4 and 5 have it; no EPYC has AMX.
* **Intel Xeon Scalable** (Platinum/Gold/Silver/Bronze *NNNN*): the second digit is the generation
  (1 Skylake, 2 Cascade Lake, 3 Cooper/Ice Lake, 4 Sapphire Rapids, 5 Emerald Rapids). All have
  AVX-512; generations 4 and later have AMX.
* **Intel Xeon Max** (Sapphire Rapids with HBM), **Xeon w3/w5/w7/w9-**\\ *NNNN* (Sapphire Rapids
  workstations) and **Xeon 6** *NNNN*\\ **P** of the 6500/6700/6900 series (Granite Rapids): AVX-512
  and AMX. **Xeon 6** *NNNN*\\ **E** (Sierra Forest, E-cores only): neither.
* **Intel Xeon E3/E5/E7** (Sandy Bridge to Broadwell): no AVX-512, no AMX.
* Everything else (Xeon D, W-, E-, Phi, the Xeon 6300 entry series, pre-AVX parts) is not placed,
  and is left out of a narrowed family.

What the flags prove: a flag that is present is an instruction the host executes, so models without
it are dropped. A flag that is absent is weaker evidence, since a hypervisor may hide it. AVX-512 is
passed through to guests on every common cloud CPU model, so a guest without ``avx512f`` is taken to
run on a host without it, but only when it shows ``avx2``, i.e. when the hypervisor passes the host's
vector extensions through at all (a guest that shows no AVX2 either runs on a masked CPU model and
nothing is concluded from its absences). AMX is different: its flag needs a guest kernel of 5.16 or
later and a hypervisor that saves the tile state, so a Sapphire Rapids guest often does not show it,
and its absence excludes nothing.

When no model fits, the caller keeps the whole family and says so.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

__all__ = ["AMX", "AVX2", "AVX512", "model_isa", "narrow_family"]

AVX2, AVX512, AMX = "avx2", "avx512f", "amx_tile"

_EPYC = re.compile(r"^amd epyc (?:embedded )?\d[0-9a-z]{2}(\d)[a-z]*$")
_SCALABLE = re.compile(r"^intel xeon (?:platinum|gold|silver|bronze) \d(\d)\d\d")
_AMX_XEON = re.compile(r"^intel xeon (?:(?:cpu )?max \d{4}|w[3579]-\d{4}|6[5-9]\d\dp\b)")
_SIERRA_FOREST = re.compile(r"^intel xeon 6\d\d\de\b")
_PRE_AVX512_XEON = re.compile(r"^intel xeon e[357]-\d{4}")


def model_isa(name: str) -> tuple[bool, bool] | None:
    """``(has AVX-512, has AMX)`` of a table model name, None when its naming does not tell (module doc).

    Args:
        name: a model name as the tables write it, e.g. ``"AMD EPYC 7742"``, ``"Intel Xeon Gold 6430"``.
    """
    s = " ".join(name.lower().split())
    if m := _EPYC.match(s):
        return int(m.group(1)) >= 4, False
    if m := _SCALABLE.match(s):
        return True, int(m.group(1)) >= 4
    if _AMX_XEON.match(s):
        return True, True
    if _SIERRA_FOREST.match(s) or _PRE_AVX512_XEON.match(s):
        return False, False
    return None


def narrow_family(names: Iterable[str], flags: Collection[str]) -> tuple[tuple[str, ...], str]:
    """``(the models of names the flags allow, what the filter required)``.

    The second item is ``""`` when the flags require nothing (no AVX-512 shown while AVX2 is hidden
    too, say), and the names come back unchanged; otherwise it reads like ``"amx_tile present, so
    models with AVX-512 and AMX (Xeon Sapphire Rapids or later)"``. The models may be none: the caller then keeps the
    whole family.

    Args:
        names: the family's model names.
        flags: the CPU flags of ``/proc/cpuinfo``.
    """
    names = tuple(names)
    need_avx512: bool | None = None
    need_amx = AMX in flags
    if AVX512 in flags:
        need_avx512 = True
    elif AVX2 in flags:
        need_avx512 = False
    if need_avx512 is None and not need_amx:
        return names, ""
    kept = []
    for name in names:
        isa = model_isa(name)
        if isa is None:
            continue
        avx512, amx = isa
        if (need_avx512 is None or avx512 == need_avx512) and (amx or not need_amx):
            kept.append(name)
    return tuple(kept), _describe(need_avx512, need_amx)


def _describe(need_avx512: bool | None, need_amx: bool) -> str:
    if need_amx:
        return f"{AMX} present, so models with AVX-512 and AMX (Xeon Sapphire Rapids or later)"
    if need_avx512:
        return f"{AVX512} present, so models with AVX-512 (EPYC Zen 4 or later, Xeon Scalable and later)"
    return f"{AVX2} without {AVX512}, so models without AVX-512 (EPYC Zen 1-3, Xeon E5/E7)"
