"""Rubin's rules: combine an estimate computed on each of M multiply-imputed data sets.

Q_bar = mean(Q_m)                        the pooled estimate
U_bar = mean(U_m)                        within-imputation variance (the complete-data variance)
B     = var(Q_m, ddof=1)                 between-imputation variance
T     = U_bar + (1 + 1/M) B              total variance
df    = (M - 1) (1 + U_bar / ((1 + 1/M) B))^2     (Rubin 1987; Barnard-Rubin's small-sample
                                                   correction needs a complete-data df, omitted)
interval: Q_bar +- t_{df, (1+level)/2} sqrt(T)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pooled:
    estimate: float
    within: float
    between: float
    total: float
    df: float
    lower: float
    upper: float


def rubin(estimates, variances, level: float = 0.90) -> Pooled:
    """Pool M estimates and their complete-data variances (zeros for a quantity observed in full)."""
    from scipy.stats import t  # scipy comes with the impute extra (statsmodels needs it)

    q = np.asarray(estimates, dtype=float)
    u = np.broadcast_to(np.asarray(variances, dtype=float), q.shape)
    m = len(q)
    if m < 2:
        raise ValueError("Rubin's rules need at least two imputations")
    q_bar, u_bar, b = float(q.mean()), float(u.mean()), float(q.var(ddof=1))
    total = u_bar + (1 + 1 / m) * b
    df = (m - 1) * (1 + u_bar / ((1 + 1 / m) * b)) ** 2 if b > 0 else np.inf
    half = float(t.ppf((1 + level) / 2, df)) * np.sqrt(total) if total > 0 else 0.0
    return Pooled(q_bar, u_bar, b, total, df, q_bar - half, q_bar + half)
