"""Intervals for proportions that never collapse at 0 or 1: Wilson's score interval, on the
effective sample size when images come in groups (patients, lesions, copies).

First used in chapter "Transfer learning" (notebooks/concepts_03_transfer.ipynb), for the
validation accuracies of the strategies; explained in chapter "Brain MRI: evaluation"
(notebooks/brain_03_evaluation.ipynb), for the sensitivity and specificity of the headline
table: a percentile bootstrap of a proportion of 1.000 gives [1.000, 1.000], which claims a
certainty no test set of a few hundred images has.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def described(unit: str, resamples: int = 1000) -> str:
    """The sentence under a table of :func:`medclass.evaluation.headline_metrics`: how its 95%
    intervals were made, over ``unit`` (such as "duplicate groups" or "lesions")."""
    return (
        f"95% intervals over {unit}: Wilson score intervals on the effective sample size for "
        f"accuracy, sensitivity and specificity; a percentile bootstrap ({resamples:,} resamples) "
        "for the other metrics"
    )


def clustered_wilson(hits, groups, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(share, low, high)``: the share of ``hits`` (booleans) with a Wilson score interval on
    the effective sample size of clustered data.

    The effective size is the count divided by the design effect, the ratio of the
    cluster-robust variance of the share (groups resampled as units) to the binomial one. At a
    share of 0 or 1 the design effect cannot be estimated, and each group counts as one
    observation, the most conservative choice. Wilson's interval never collapses to a point at
    0 or 1, as a bootstrap percentile interval does.
    """
    hits = np.asarray(hits, dtype=float)
    groups = np.asarray(groups)
    if not len(hits):
        return float("nan"), float("nan"), float("nan")
    share = float(hits.mean())
    keys, inverse = np.unique(groups, return_inverse=True)
    n, n_groups = len(hits), len(keys)
    if 0 < share < 1 and n_groups > 1:
        residuals = np.bincount(inverse, weights=hits - share)
        robust = n_groups / (n_groups - 1) * np.sum(residuals**2) / n**2
        effective = min(n, share * (1 - share) / robust) if robust > 0 else n
    else:
        effective = n_groups
    return (share, *wilson(share, effective, confidence))


def wilson(share: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """``(low, high)``: Wilson's score interval for a proportion ``share`` of ``n`` independent
    observations (or an effective sample size)."""
    z = norm.ppf(0.5 + confidence / 2)
    centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(share * (1 - share) / n + z**2 / (4 * n**2))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
