"""Calibration and operating points: do the probabilities mean what they say, and where to cut.

First used in chapter "Brain MRI: evaluation" (notebooks/brain_03_evaluation.ipynb).

Both are fitted on the **validation** split and only then applied to the test split.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy import optimize

from medclass.evaluation import as_columns

TEMPERATURE_RANGE = (0.05, 20.0)  # where fit_temperature searches


def reliability_bins(y_true: np.ndarray, probabilities: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Per non-empty equal-width confidence bin: ``[share of predictions, mean confidence,
    accuracy]``, one row each. Confidence is the probability of the predicted class."""
    columns = as_columns(probabilities)
    confidence = columns.max(axis=1)
    correct = columns.argmax(axis=1) == np.asarray(y_true)
    bins = np.clip(np.digitize(confidence, np.linspace(0, 1, n_bins + 1)[1:-1]), 0, n_bins - 1)
    return np.array(
        [
            [(bins == b).mean(), confidence[bins == b].mean(), correct[bins == b].mean()]
            for b in range(n_bins)
            if (bins == b).any()
        ]
    )


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, n_bins: int = 10) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins
    and weighted by how many predictions fall in each (Guo et al., 2017)."""
    share, confidence, accuracy = reliability_bins(y_true, probabilities, n_bins).T
    return float(np.sum(share * np.abs(accuracy - confidence)))


def _logits(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    if clipped.ndim == 1:
        return np.log(clipped / (1 - clipped))
    return np.log(clipped)


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their logits divided by ``temperature`` (>1 softens, <1 sharpens)."""
    logits = _logits(np.asarray(probabilities, dtype="float64")) / temperature
    if logits.ndim == 1:
        return 1 / (1 + np.exp(-logits))
    logits -= logits.max(axis=1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def fit_temperature(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``y_true`` (validation split).

    One number for the whole model, so it changes confidence but never the ranking or the
    predicted class (Guo et al., 2017).
    """
    y_true = np.asarray(y_true).astype(int)

    def nll(log_t: float) -> float:
        columns = as_columns(apply_temperature(probabilities, float(np.exp(log_t))))
        return float(-np.mean(np.log(np.clip(columns[np.arange(len(y_true)), y_true], 1e-12, 1))))

    bounds = np.log(TEMPERATURE_RANGE)
    result = optimize.minimize_scalar(nll, bounds=tuple(bounds), method="bounded")
    return float(np.exp(result.x))


def describe_temperature(temperature: float) -> str:
    """What a fitted temperature says about the model, in words."""
    if not TEMPERATURE_RANGE[0] * 1.01 < temperature < TEMPERATURE_RANGE[1] * 0.99:
        return (
            f"temperature {temperature:.3f}, at the edge of the search range: the probabilities "
            "carry almost no information to calibrate"
        )
    direction = "softens" if temperature > 1 else "sharpens"
    strength = "barely " if abs(temperature - 1) < 0.1 else ""
    return (
        f"temperature {temperature:.3f}: dividing the logits by it {strength}{direction} the validation "
        "probabilities to their lowest log-loss; the test split's calibration error, before and "
        "after, says whether that carried over"
    )


def plot_reliability(y_true, before, after=None, n_bins: int = 10, title: str = ""):
    """Reliability diagram: accuracy against confidence per bin, ECE in the legend."""
    figure, axis = plt.subplots(figsize=(4.8, 4.4))
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    for name, probabilities in (("before", before), ("after temperature scaling", after)):
        if probabilities is None:
            continue
        _, confidence, accuracy = reliability_bins(y_true, probabilities, n_bins).T
        axis.plot(
            confidence,
            accuracy,
            marker="o",
            label=f"{name} (ECE {expected_calibration_error(y_true, probabilities, n_bins):.3f})",
        )
    axis.set_xlabel("confidence (predicted probability of the chosen class)")
    axis.set_ylabel("accuracy")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_title(title or "Reliability diagram")
    axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure


def threshold_for_sensitivity(y_true: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold at which ``scores >= threshold`` finds at least ``target`` of the
    positives (``y_true == 1``): the most specific operating point that meets the target.

    Choose it on the validation split; its test sensitivity will scatter around the target.
    """
    if not 0 < target <= 1:
        raise ValueError(f"target sensitivity {target} must lie in (0, 1].")
    positives = np.sort(np.asarray(scores)[np.asarray(y_true) == 1])
    if len(positives) == 0:
        raise ValueError("No positive cases to set a sensitivity target on.")
    # Keep the top `needed` positive scores above the threshold.
    needed = int(np.ceil(target * len(positives)))
    return float(positives[len(positives) - needed])


PRIOR_EXPONENTS = tuple(np.round(np.arange(0, 1.51, 0.1), 2))


def shift_to_prior(probabilities: np.ndarray, prior: np.ndarray, exponent: float) -> np.ndarray:
    """Each row times ``prior ** exponent``, renormalised: a decision rule between the model's
    own (``exponent`` 0) and one that favours frequent classes as the training data did.

    A model trained with balanced class weights answers as if every class were equally common,
    which is what balanced accuracy rewards; multiplying by the class prior (exponent 1) puts
    the frequencies back, which is what plain accuracy rewards (Menon et al. 2021, "logit
    adjustment", read backwards)."""
    prior = np.maximum(np.asarray(prior, dtype="float64"), 1e-12)  # a class absent from training
    shifted = np.asarray(probabilities, dtype="float64") * prior**exponent
    return shifted / shifted.sum(axis=1, keepdims=True)


def fit_prior_exponent(y_true: np.ndarray, probabilities: np.ndarray, prior: np.ndarray, score=None) -> float:
    """The exponent of :func:`shift_to_prior`, among ``PRIOR_EXPONENTS``, whose argmax scores
    best by ``score(y_true, y_pred)`` (default: macro-F1, which counts both a class's misses and
    its false alarms; the smallest of tied exponents). Choose it on validation."""
    if score is None:
        from medclass.evaluation import macro_f1

        k = probabilities.shape[1]
        score = lambda labels, predicted: macro_f1(labels, predicted, k)  # noqa: E731
    results = [score(y_true, shift_to_prior(probabilities, prior, e).argmax(axis=1)) for e in PRIOR_EXPONENTS]
    return float(PRIOR_EXPONENTS[int(np.argmax(results))])
