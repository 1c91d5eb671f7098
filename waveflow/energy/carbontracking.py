"""Carbontracker 2.4.7 run epoch by epoch as the paper did, but offline, fast and parsed correctly.

    with EnergyMeter("train") as meter, CarbontrackerSession(epochs=3, meter=meter) as ct:
        for epoch in range(3):
            ct.epoch_start(); train_one_epoch(); ct.epoch_end()
    result = ct.result  # carbontracker's actual kWh, its prediction, and how it measured

What we change around ``carbontracker.tracker.CarbonTracker`` and why:

* **No network.** ``IntensityService._fetch_geo_location`` is replaced by ``lambda: None`` and
  ``geocoder.ip`` by a function that raises, so no DNS lookup or connection is ever attempted (a
  silent network otherwise blocks the constructor for geocoder's 5 s timeout). Without a
  location carbontracker uses ``constants.WORLD_AVG_CARBON_INTENSITY``, which we set to our
  intensity; ``constants.PUE_2023`` (by which it multiplies every reported energy) is set to our
  PUE. Both are read at call time, so they stay patched while a tracker runs and are restored after.
* **No 1.2 s CPU probe.** ``GenericCPU.get_cpu_brand`` (py-cpuinfo, forks a subprocess) returns
  the brand we read from ``/proc/cpuinfo``, the same CPUID string; carbontracker's own TDP
  matching is left untouched so its figure is exactly what it would report.
* **No process kill.** ``components="all"`` always finds the CPU component (``GenericCPU`` is
  "available" on every machine), so the monitor thread never meets ``NoComponentsAvailableError``,
  the error that ends in ``os._exit(70)`` with ``components="gpu"`` on a GPU-less machine.
  ``ignore_errors=True`` turns any other monitor error into "stop monitoring" instead of
  ``os._exit``/``sys.exit``, and every call into carbontracker is wrapped here, so a failure is
  recorded in ``notes`` and the training goes on (a notebook kernel survives).
* **Correct parsing.** 2.4.7's ``parser.aggregate_consumption`` returns the *prediction* when
  epochs != 1 (its regex wants "for N epochs", the log says "epoch(s)"). We read the ``actual``
  and ``pred`` blocks of our own output log with ``parser.get_consumption`` and the per-epoch
  power and duration lines of the standard log. ``interpretable=True`` (carbontracker's default)
  is required: without the "This is equivalent to" lines its regexes match neither block.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..paths import BUILD
from . import carbon
from . import readers as er
from .meter import EnergyMeter
from .record import J_PER_KWH

DEFAULT_LOG_DIR = BUILD / "carbontracker"

_PATCH_LOCK = threading.Lock()
_PATCH_STATE: dict[str, Any] = {"users": 0}


@dataclass
class CarbontrackerResult:
    """What carbontracker reported for one tracked block, parsed from its logs.

    ``energy_kwh`` and ``co2e_g`` are carbontracker's "Actual consumption" (PUE included);
    ``epoch_energy_j`` are power x duration per epoch from its standard log (PUE excluded, the
    durations rounded to 10 ms there).
    """

    epochs: int  # epochs monitored
    total_epochs: int  # the ``epochs`` carbontracker predicted for
    energy_kwh: float
    co2e_g: float
    predicted_kwh: float | None  # as printed after ``epochs_before_pred`` epochs
    extrapolated_kwh: float  # total_epochs x mean monitored epoch energy (PUE included)
    epoch_duration_s: list[float]
    epoch_energy_j: list[float]
    epoch_power_w: dict[str, list[float]]
    devices: dict[str, list[str]]
    method: str
    pue: float
    intensity_g_per_kwh: float
    intensity_code: str
    std_log: str
    output_log: str
    notes: list[str] = field(default_factory=list)

    @property
    def energy_j(self) -> float:
        return self.energy_kwh * J_PER_KWH


def _install_patches(intensity: float, pue: float, brand: str | None) -> None:
    """Patch carbontracker for offline use; reference-counted so trackers may nest if they agree."""
    from carbontracker import constants
    from carbontracker.components.cpu import generic
    from carbontracker.emissions.intensity import intensity as ct_intensity

    with _PATCH_LOCK:
        if _PATCH_STATE["users"]:
            if (_PATCH_STATE["values"]) != (intensity, pue):
                raise ValueError(
                    f"CarbontrackerSession: another CarbontrackerSession runs with (intensity, PUE) = "
                    f"{_PATCH_STATE['values']}; expected the same, got {(intensity, pue)}"
                )
            _PATCH_STATE["users"] += 1
            return

        def no_geolocation(self: Any) -> None:
            self.logger.err_debug("waveflow: geolocation disabled (offline); using the fixed intensity")
            return None

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("waveflow.carbontracking: geocoder disabled, no network use")

        saved = [
            (constants, "WORLD_AVG_CARBON_INTENSITY", constants.WORLD_AVG_CARBON_INTENSITY),
            (constants, "PUE_2023", constants.PUE_2023),
            (ct_intensity.IntensityService, "_fetch_geo_location", ct_intensity.IntensityService._fetch_geo_location),
            (ct_intensity.geocoder, "ip", ct_intensity.geocoder.ip),
        ]
        constants.WORLD_AVG_CARBON_INTENSITY = intensity
        constants.PUE_2023 = pue
        ct_intensity.IntensityService._fetch_geo_location = no_geolocation
        ct_intensity.geocoder.ip = refuse
        if brand is not None:
            saved.append((generic.GenericCPU, "get_cpu_brand", generic.GenericCPU.get_cpu_brand))
            generic.GenericCPU.get_cpu_brand = lambda self: brand
        _PATCH_STATE.update(users=1, values=(intensity, pue), saved=saved)


def _remove_patches() -> None:
    with _PATCH_LOCK:
        if _PATCH_STATE["users"] == 0:
            return
        _PATCH_STATE["users"] -= 1
        if _PATCH_STATE["users"] == 0:
            for owner, name, value in reversed(_PATCH_STATE.pop("saved")):
                setattr(owner, name, value)


def describe_handlers(components: list[Any]) -> tuple[str, list[str]]:
    """Method label ("Carbontracker NVML power + generic CPU, TDP/2 constant (AMD EPYC 7232P, 120 W)") and notes."""
    parts, notes = [], []
    for comp in components:
        h = comp._handler
        kind = type(h).__name__
        if kind == "GenericCPU":
            full = h.tdp * 2 if h.tdp is not None else float("nan")
            matched = (
                h.cpu_brand
                if h.cpu_brand in h.cpu_power_data
                else next((n for n in h.cpu_power_data if h.cpu_brand.split("@")[0].strip() in n), None)
            )
            if matched is None:
                parts.append(f"generic CPU, TDP/2 constant (table mean for unknown {h.cpu_brand!r}, {full:g} W)")
            else:
                parts.append(f"generic CPU, TDP/2 constant ({matched}, {full:g} W)")
                if matched != h.cpu_brand and not any(c.isdigit() for c in h.cpu_brand):
                    notes.append(
                        f"carbontracker matched the generic brand {h.cpu_brand!r} to the first table row "
                        f"containing it ({matched}, {full:g} W); its CPU power is {h.tdp:g} W whatever the load"
                    )
        elif kind == "IntelCPU":
            parts.append("RAPL")
        elif kind == "NvidiaGPU":
            parts.append("NVML power")
        elif kind.startswith("AppleSilicon"):
            parts.append("powermetrics")
        elif kind == "SimulatedCPUHandler":
            parts.append(f"simulated CPU ({h.cpu_brand}, {h.tdp:g} W)")
        else:
            parts.append(kind)
    return "Carbontracker " + " + ".join(parts or ["(no component)"]), notes


class CarbontrackerSession:
    """One ``CarbonTracker`` over a training run, offline, with our intensity and PUE.

    Args:
        epochs: total epochs of the training (carbontracker predicts for this many).
        log_dir: folder for carbontracker's three log files (default ``build/carbontracker``).
        intensity: carbon-intensity code or object (default: waveflow.carbon's default).
        pue: PUE preset name or value (default: waveflow.carbon's default).
        meter: an :class:`~waveflow.energy.EnergyMeter` that also gets a section per epoch.
        update_interval: carbontracker's sampling period in seconds (its default 1; 10 in v1.1.6).
        epochs_before_pred: epochs before it prints a prediction (default 1, as the paper's era).
        monitor_epochs: epochs to monitor, -1 = all (v1.1.6 defaulted to 1).
        verbose: carbontracker's verbosity (0 keeps only its warnings on stdout).
        fast_cpu_brand: give carbontracker the /proc/cpuinfo brand instead of py-cpuinfo's 1.2 s probe.
    """

    def __init__(
        self,
        epochs: int,
        log_dir: str | Path | None = None,
        intensity: Any = None,
        pue: Any = None,
        *,
        meter: EnergyMeter | None = None,
        update_interval: float = 1.0,
        epochs_before_pred: int = 1,
        monitor_epochs: int = -1,
        verbose: int = 0,
        fast_cpu_brand: bool = True,
    ) -> None:
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"CarbontrackerSession.epochs: expected a positive integer, got {epochs!r}")
        if not update_interval > 0:
            raise ValueError(f"CarbontrackerSession.update_interval: expected seconds > 0, got {update_interval!r}")
        if monitor_epochs != -1 and not epochs_before_pred <= monitor_epochs <= epochs:
            raise ValueError(
                f"CarbontrackerSession.monitor_epochs: expected -1 or epochs_before_pred <= m <= epochs "
                f"({epochs_before_pred} <= m <= {epochs}), got {monitor_epochs}"
            )
        self.epochs, self.meter = epochs, meter
        self.log_dir = Path(log_dir) if log_dir is not None else DEFAULT_LOG_DIR
        self.intensity, self.pue = carbon.resolve(intensity, pue)
        self.update_interval, self.epochs_before_pred = update_interval, epochs_before_pred
        self.monitor_epochs = epochs if monitor_epochs == -1 else monitor_epochs
        self.verbose, self.fast_cpu_brand = verbose, fast_cpu_brand
        self.notes: list[str] = []
        self.result: CarbontrackerResult | None = None
        self._ct: Any = None
        self._epoch = 0
        self._open: tuple[float, Any] | None = None
        self._durations: list[float] = []
        self._patched = False
        self._stopped = False
        # Carbontracker's console output (its log handlers write to the sys.stdout of the moment they are
        # built, and some components print): captured here, never shown; warnings and errors become notes.
        self._console = io.StringIO()

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        with contextlib.redirect_stdout(self._console), contextlib.redirect_stderr(self._console):
            yield

    def console_notes(self) -> list[str]:
        """Carbontracker's own warnings and errors from the captured console, one note each.

        Its two offline warnings about the intensity provider are dropped: this CarbontrackerSession gives it the
        intensity through its constants (the record's intensity fields say which), so they would mislead.
        """
        lines = [line.strip() for line in self._console.getvalue().splitlines()]
        keep = ("WARNING", "ERROR", "CRITICAL")
        benign = ("No API keys provided", "No carbon intensity provider specified")
        wanted = (line for line in lines if any(k in line for k in keep) and not any(b in line for b in benign))
        return list(dict.fromkeys(wanted))

    def start(self) -> CarbontrackerSession:
        """Construct the tracker (idempotent); called by ``__enter__`` or the first ``epoch_start``."""
        if self._ct is not None or self._patched or self._stopped:
            return self
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with self._quiet():  # importing carbontracker builds module-level loggers bound to sys.stdout
                _install_patches(
                    float(self.intensity.g_per_kwh),
                    float(self.pue.value),
                    er.cpu_brand() if self.fast_cpu_brand else None,
                )
        except Exception as exc:  # e.g. another tracker with other constants: record it, keep training
            self.notes.append(f"carbontracker not started ({type(exc).__name__}: {exc}); not tracked")
            self._stopped = True
            return self
        self._patched = True
        try:
            with self._quiet():
                from carbontracker.tracker import CarbonTracker

                self._ct = self._tracker(CarbonTracker)
            if self._ct.deleted:
                raise RuntimeError("carbontracker stopped itself during construction")
            self._thread, self._logger = self._ct.tracker, self._ct.logger  # kept after carbontracker deletes them
        except (Exception, SystemExit) as exc:  # SystemExit: carbontracker's sys.exit(70) paths
            self.notes.append(f"carbontracker failed to start ({type(exc).__name__}: {exc}); not tracked")
            self._ct = None
        return self

    def _tracker(self, tracker_class: Any) -> Any:
        return tracker_class(
            epochs=self.epochs,
            epochs_before_pred=self.epochs_before_pred,
            monitor_epochs=self.monitor_epochs,
            update_interval=self.update_interval,
            interpretable=True,
            ignore_errors=True,
            components="all",
            log_dir=str(self.log_dir),
            log_file_prefix="waveflow",
            verbose=self.verbose,
        )

    def _call(self, name: str) -> None:
        if self._ct is None or self._ct.deleted:
            return
        try:
            with self._quiet():
                getattr(self._ct, name)()
        except (Exception, SystemExit) as exc:
            self.notes.append(f"carbontracker.{name} failed in epoch {self._epoch} ({type(exc).__name__}: {exc})")

    def epoch_start(self) -> None:
        """Start an epoch (carbontracker's and, if given, a meter section ``epoch N``)."""
        self.start()
        if self._open is not None:
            self.notes.append(f"epoch_start without epoch_end in epoch {self._epoch}; ignored")
            return
        self._epoch += 1
        section = self.meter.section(f"epoch {self._epoch}") if self.meter is not None else None
        if section is not None:
            section.__enter__()
        self._call("epoch_start")
        self._open = (time.perf_counter(), section)

    def epoch_end(self) -> None:
        """End the epoch opened by :meth:`epoch_start`."""
        if self._open is None:
            self.notes.append(f"epoch_end without epoch_start after epoch {self._epoch}; ignored")
            return
        t0, section = self._open
        self._call("epoch_end")
        self._durations.append(time.perf_counter() - t0)
        if section is not None:
            section.__exit__(None, None, None)
        self._open = None

    def stop(self) -> CarbontrackerResult | None:
        """Close the open epoch, stop carbontracker, restore its constants, parse its logs."""
        if self._stopped or not self._patched:
            return self.result
        self._stopped = True
        if self._open is not None:
            self.epoch_end()
        if self._ct is not None and not self._ct.deleted:
            if self._epoch < self.monitor_epochs:
                self.notes.append(
                    f"stopped after {self._epoch} of {self.monitor_epochs} monitored epochs "
                    "(carbontracker's own 'Actual' header then says one epoch fewer; the energy covers all)"
                )
            self._call("stop")
        try:
            with self._quiet():
                self.result = self._parse() if self._ct is not None else None
        except Exception as exc:  # a parse failure must not end the run
            self.notes.append(f"could not parse carbontracker's logs ({type(exc).__name__}: {exc})")
        finally:
            self._close_logs()
            _remove_patches()
        return self.result

    def _close_logs(self) -> None:
        """Flush and close carbontracker's file handlers (it never does, leaking file descriptors)."""
        lg = getattr(self, "_logger", None)
        for logger in (
            getattr(lg, "logger", None),
            getattr(lg, "logger_output", None),
            getattr(lg, "logger_err", None),
        ):
            for h in list(getattr(logger, "handlers", [])):
                h.close()
                logger.removeHandler(h)

    def _log_files(self) -> tuple[Path, Path]:
        def path(logger: logging.Logger) -> Path:
            return next(Path(h.baseFilename) for h in logger.handlers if isinstance(h, logging.FileHandler))

        return path(self._logger.logger), path(self._logger.logger_output)

    def _unsampled_epochs(self) -> list[int]:
        """Epochs (1-based) in which a component got no power sample of its own."""
        out = set()
        for comp in self._thread.components:
            pu = comp.power_usages
            for i in range(1, self._epoch + 1):
                if i > len(pu) or not pu[i - 1] or (i > 1 and pu[i - 1] is pu[i - 2]):
                    out.add(i)
        return sorted(out)

    def _parse(self) -> CarbontrackerResult:
        from carbontracker import parser

        std, out = self._log_files()
        for h in self._logger.logger.handlers + self._logger.logger_output.handlers:
            h.flush()
        std_text, out_text = std.read_text(), out.read_text()
        actual, pred = parser.get_consumption(out_text)
        durations = parser.get_epoch_durations(std_text)
        powers = parser.get_avg_power_usages(std_text)
        epoch_j = [sum(sum(p[i]) * d for p in powers.values() if i < len(p)) for i, d in enumerate(durations)]
        method, notes = describe_handlers(self._thread.components)
        notes = self.notes + notes + [f"carbontracker said: {n}" for n in self.console_notes()]
        short = self._unsampled_epochs()
        if short:
            notes.append(
                f"epoch(s) {short} ended before carbontracker's sampler (every {self.update_interval:g} s) "
                "took a sample in them: it reused a neighbouring epoch's power (or, for the last epoch, its energy)"
            )
        if actual is None:
            notes.append("no 'Actual consumption' block in carbontracker's output log")
        for comp in self._thread.components:
            try:
                n_dev = len(comp.devices())
            except Exception:  # a component without devices() cannot mislead here
                continue
            if n_dev > 1:
                # carbontracker 2.4.7 sums the handlers' power into one flat list and then averages
                # it (component.py), so with several devices it reports the mean per device.
                notes.append(
                    f"carbontracker 2.4.7 averages rather than sums the power of the {n_dev} "
                    f"{getattr(comp, 'name', '')} devices: its figure is about 1/{n_dev} of their total"
                )
        energy = actual["energy (kWh)"] if actual else float("nan")
        n = len(durations)
        return CarbontrackerResult(
            epochs=n,
            total_epochs=self.epochs,
            energy_kwh=energy,
            co2e_g=actual["co2eq (g)"] if actual else float("nan"),
            predicted_kwh=pred["energy (kWh)"] if pred else None,
            extrapolated_kwh=energy / n * self.epochs if n else float("nan"),
            epoch_duration_s=durations,
            epoch_energy_j=epoch_j,
            epoch_power_w={k: [sum(x) for x in v] for k, v in powers.items()},
            devices=parser.get_devices(std_text),
            method=method,
            pue=float(self.pue.value),
            intensity_g_per_kwh=float(self.intensity.g_per_kwh),
            intensity_code=str(self.intensity.code),
            std_log=str(std),
            output_log=str(out),
            notes=notes,
        )

    def __enter__(self) -> CarbontrackerSession:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.notes.append(f"block raised {exc_type.__name__}")
        self.stop()
        return False


def expected_energy_kwh(result: CarbontrackerResult) -> float:
    """Sum of the logged per-epoch energies x PUE in kWh: what ``energy_kwh`` must equal."""
    return sum(result.epoch_energy_j) * result.pue / J_PER_KWH if not math.isnan(result.pue) else float("nan")
