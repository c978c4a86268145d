"""Figures over several seeds: mean ± standard deviation, and paired comparisons against a baseline.

A comparison is paired by user: in each seed both models are scored on the same test users of the same
split, so the per-user differences are pooled over seeds and tested with a paired t-test (scipy's
``ttest_rel``) and an exact sign test (``binomtest`` on wins against losses, ties dropped). The per-seed
mean differences are reported too, so a gain that holds in one seed only is visible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_std(runs: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation (ddof 1; 0 for one run) of each metric over runs. A metric
    missing from some run is averaged over the runs that have it."""
    keys = list(dict.fromkeys(k for r in runs for k in r))
    mean, std = {}, {}
    for k in keys:
        v = np.array([r[k] for r in runs if k in r], np.float64)
        mean[k] = float(v.mean())
        std[k] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return mean, std


def paired(model: Sequence[np.ndarray], baseline: Sequence[np.ndarray]) -> dict[str, float]:
    """Compare per-user values of a model with a baseline's, one array pair per seed (same users, same
    order). Returns the mean difference, its 95% confidence interval (t), the per-seed mean differences'
    mean and std, wins / losses / ties, and the p-values of the paired t-test and the sign test."""
    from scipy import stats

    if len(model) != len(baseline) or any(len(a) != len(b) for a, b in zip(model, baseline)):
        raise ValueError("paired comparison needs the same users in each seed for both models")
    d = np.concatenate([np.asarray(a, np.float64) - np.asarray(b, np.float64) for a, b in zip(model, baseline)])
    per_seed = np.array([np.mean(np.asarray(a, np.float64) - b) for a, b in zip(model, baseline) if len(a)])
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    out = {"diff": float(d.mean()) if len(d) else 0.0, "n": int(len(d)), "wins": wins, "losses": losses,
           "ties": int(len(d) - wins - losses),
           "seed_diff_mean": float(per_seed.mean()) if len(per_seed) else 0.0,
           "seed_diff_std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0}
    if len(d) > 1 and d.std() > 0:
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        out.update(ci_low=out["diff"] - half, ci_high=out["diff"] + half,
                   p_ttest=float(stats.ttest_1samp(d, 0.0).pvalue))
    else:
        out.update(ci_low=out["diff"], ci_high=out["diff"], p_ttest=1.0)
    out["p_sign"] = float(stats.binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0
    return out


def fmt(mean: float, std: float | None = None, digits: int = 4) -> str:
    """``0.3721 ± 0.0042`` (or the mean alone without a spread)."""
    return f"{mean:.{digits}f}" if not std else f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_p(p: float) -> str:
    """A p-value as printed: two significant digits, and ``< 1e-4`` below that (a p-value is never 0)."""
    if p != p:  # nan: no test possible
        return "—"
    return "< 1e-4" if p < 1e-4 else f"{p:.2g}"
