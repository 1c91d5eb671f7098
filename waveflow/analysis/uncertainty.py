"""How sure a quality ranking is: a paired bootstrap over held-out clips.

Every model is scored on the very same held-out crops, so the question "is A better than B?" is about
the *difference* of their scores on those crops, which a paired bootstrap answers: resample the held-out
clips with replacement (all crops of a drawn clip come along, since crops of one recording are not
independent), recompute each model's sample-weighted mean, and read the 95 % interval of every
difference. Two models are told apart only where that interval excludes zero; a ranking or a
"dominated" label is stated only then. Pure numpy/pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVEL = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Bootstrap:
    """Per-model means with intervals, and every pairwise difference with its interval."""

    summary: pd.DataFrame  # label, mean, ci_low, ci_high, n_clips, n_crops
    pairs: pd.DataFrame  # a, b, difference (a - b), ci_low, ci_high, told_apart

    def told_apart(self, a: str, b: str) -> bool:
        """Whether the interval of ``a - b`` excludes zero."""
        row = self.pairs[(self.pairs["a"] == a) & (self.pairs["b"] == b)]
        if row.empty:
            row = self.pairs[(self.pairs["a"] == b) & (self.pairs["b"] == a)]
        if row.empty:
            raise KeyError(f"no pair ({a!r}, {b!r}); models are {sorted(self.summary.iloc[:, 0])}")
        return bool(row["told_apart"].iloc[0])


def paired_bootstrap(
    scores: pd.DataFrame,
    value: str = "nll_bits",
    label: str = "config",
    cluster: str = "clip",
    unit: str = "crop",
    weight: str | None = "samples",
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> Bootstrap:
    """Means and pairwise differences of ``value`` per ``label``, with cluster-bootstrap intervals.

    Args:
        scores: one row per ``(label, cluster, unit)``: every model scored on the same units.
        cluster: the column resampled (held-out clips); all units of a drawn cluster come along.
        weight: a column weighting the units (samples per crop), or None for equal weights.

    Raises:
        ValueError: when the models were not scored on the same units, or fewer than two clusters exist.
    """
    for column in (value, label, cluster, unit) + ((weight,) if weight else ()):
        if column not in scores:
            raise ValueError(f"paired_bootstrap: no column {column!r}; columns are {list(scores.columns)}")
    wide = scores.pivot_table(index=[cluster, unit], columns=label, values=value, aggfunc="first")
    if wide.isna().any().any():
        raise ValueError("paired_bootstrap: the models were not scored on the same held-out units")
    clusters = wide.index.get_level_values(0)
    names = list(wide.columns)
    groups = {c: np.flatnonzero(clusters == c) for c in dict.fromkeys(clusters)}
    if len(groups) < 2:
        raise ValueError(f"paired_bootstrap: {len(groups)} held-out {cluster}(s); expected at least 2 to resample")
    weights = (
        scores.drop_duplicates([cluster, unit]).set_index([cluster, unit])[weight].reindex(wide.index).to_numpy(float)
        if weight
        else np.ones(len(wide))
    )
    values = wide.to_numpy(float)
    rng = np.random.default_rng(seed)
    keys = list(groups)
    draws = np.empty((resamples, len(names)))
    for r in range(resamples):
        rows = np.concatenate([groups[keys[i]] for i in rng.integers(0, len(keys), len(keys))])
        draws[r] = np.average(values[rows], axis=0, weights=weights[rows])
    point = np.average(values, axis=0, weights=weights)
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail], axis=0)
    summary = pd.DataFrame(
        {
            label: names,
            "mean": point,
            "ci_low": low,
            "ci_high": high,
            "n_clips": len(groups),
            "n_crops": len(wide),
        }
    )
    pairs = []
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if j <= i:
                continue
            diff = draws[:, i] - draws[:, j]
            lo, hi = np.quantile(diff, [tail, 1 - tail])
            pairs.append(
                {
                    "a": a,
                    "b": b,
                    "difference": point[i] - point[j],
                    "ci_low": lo,
                    "ci_high": hi,
                    "told_apart": lo > 0 or hi < 0,
                }
            )
    return Bootstrap(summary, pd.DataFrame(pairs))


def tied_with_best(boot: Bootstrap, lower_is_better: bool = True) -> tuple[str, list[str], list[str]]:
    """``(best, tied, worse)``: the model with the best mean, the models not told apart from it, and
    the models told apart from it (worse)."""
    label = boot.summary.columns[0]
    order = boot.summary.sort_values("mean", ascending=lower_is_better)[label].tolist()
    best = order[0]
    tied = [m for m in order[1:] if not boot.told_apart(best, m)]
    worse = [m for m in order[1:] if boot.told_apart(best, m)]
    return best, tied, worse


def ranking_sentence(boot: Bootstrap, what: str = "held-out NLL", lower_is_better: bool = True) -> str:
    """The ranking in words, claiming no difference smaller than its interval."""
    best, tied, worse = tied_with_best(boot, lower_is_better)
    n = int(boot.summary["n_clips"].iloc[0])
    crops = int(boot.summary["n_crops"].iloc[0])
    level = f"{LEVEL:.0%}"
    head = f"On {crops} held-out crops of {n} clips, {best} has the best mean {what}"
    if tied:
        head += f"; {', '.join(tied)} cannot be told apart from it ({level} interval of the difference includes 0)"
    if worse:
        head += f"; {', '.join(worse)} {'is' if len(worse) == 1 else 'are'} worse beyond that interval"
    return head + " (one training run each: the interval covers the held-out data, not the spread over seeds)."


def dominated_beyond_noise(
    table: pd.DataFrame,
    boot: Bootstrap,
    energy: str,
    label: str = "config",
    lower_is_better: bool = True,
    energy_tolerance: float = 0.0,
) -> dict[str, list[str]]:
    """``{model: [models that dominate it]}`` counting only differences told apart from the noise.

    A dominates B when A's energy is no higher than B's (within ``energy_tolerance``, relative: the
    meter's own run-to-run spread, or a budget's overshoot) and A's quality is better beyond the
    bootstrap interval. Equal quality within noise and lower energy is **not** enough: the quality tie
    leaves the trade-off undecided.
    """
    out: dict[str, list[str]] = {}
    rows = table.set_index(label)
    means = boot.summary.set_index(boot.summary.columns[0])["mean"]
    for b in rows.index:
        by = []
        for a in rows.index:
            if a == b or rows.loc[a, energy] > rows.loc[b, energy] * (1 + energy_tolerance):
                continue
            better = means[a] < means[b] if lower_is_better else means[a] > means[b]
            if better and boot.told_apart(a, b):
                by.append(a)
        if by:
            out[b] = by
    return out
