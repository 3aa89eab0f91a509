"""Evaluation on the held-out test split: metrics with bootstrap intervals, and figures.

Defined in chapter "Brain MRI: evaluation" (notebooks/brain_03_evaluation.ipynb).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn import metrics


def predict_probabilities(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(labels, probabilities)`` for every batch of ``dataset``, in order."""
    labels, probabilities = [], []
    for images, batch_labels in dataset:
        probabilities.append(np.asarray(model(images, training=False)))
        labels.append(np.asarray(batch_labels))
    probabilities = np.concatenate(probabilities)
    if probabilities.shape[-1] == 1:
        probabilities = probabilities[:, 0]
    return np.concatenate(labels).astype(int), probabilities


def predicted_labels(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class indices: sigmoid outputs against ``threshold``, softmax outputs by argmax."""
    if probabilities.ndim == 1:
        return (probabilities >= threshold).astype(int)
    return probabilities.argmax(axis=1)


def bootstrap_interval(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    y_score: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """``(estimate, low, high)``: the metric and its percentile bootstrap interval over images."""
    rng = np.random.default_rng(seed)
    estimate = metric(y_true, y_score)
    values = []
    for _ in range(n_resamples):
        index = rng.integers(0, len(y_true), len(y_true))
        if len(np.unique(y_true[index])) < 2:
            continue  # AUC is undefined on a one-class resample
        values.append(metric(y_true[index], y_score[index]))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(estimate), float(low), float(high)


def headline_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5, seed: int = 0
) -> pd.DataFrame:
    """Accuracy, balanced accuracy, sensitivity, specificity and ROC-AUC with 95% intervals."""

    def at_threshold(metric):
        return lambda labels, scores: metric(labels, predicted_labels(scores, threshold))

    scores = {
        "accuracy": at_threshold(metrics.accuracy_score),
        "balanced accuracy": at_threshold(metrics.balanced_accuracy_score),
    }
    if probabilities.ndim == 1:
        scores["sensitivity"] = at_threshold(lambda t, p: metrics.recall_score(t, p, pos_label=1))
        scores["specificity"] = at_threshold(lambda t, p: metrics.recall_score(t, p, pos_label=0))
        scores["ROC-AUC"] = metrics.roc_auc_score
    rows = []
    for name, metric in scores.items():
        estimate, low, high = bootstrap_interval(metric, y_true, probabilities, seed=seed)
        rows.append({"metric": name, "value": estimate, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows).set_index("metric")


def classification_report(
    y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str], threshold: float = 0.5
) -> pd.DataFrame:
    """Scikit-learn's per-class precision, recall, F1 and support, as a DataFrame."""
    report = metrics.classification_report(
        y_true,
        predicted_labels(probabilities, threshold),
        labels=range(len(class_names)),
        target_names=list(class_names),
        output_dict=True,
        zero_division=0,
    )
    return pd.DataFrame(report).T


def plot_confusion_matrix(y_true, probabilities, class_names, threshold=0.5, title=""):
    """Counts and row-normalised confusion matrices, side by side."""
    predicted = predicted_labels(probabilities, threshold)
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for axis, normalize, name in ((axes[0], None, "counts"), (axes[1], "true", "row-normalised")):
        metrics.ConfusionMatrixDisplay.from_predictions(
            y_true,
            predicted,
            labels=range(len(class_names)),
            display_labels=class_names,
            normalize=normalize,
            values_format=".2f" if normalize else "d",
            ax=axis,
            colorbar=False,
            cmap="Blues",
        )
        axis.set_title(f"Confusion matrix ({name})")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_roc(y_true, probabilities, title=""):
    """ROC curve of a binary classifier, AUC in the legend."""
    figure, axis = plt.subplots(figsize=(4.5, 4.2))
    metrics.RocCurveDisplay.from_predictions(y_true, probabilities, ax=axis, name="model")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    axis.set_title(title or "ROC curve")
    axis.legend(loc="lower right")
    figure.tight_layout()
    return figure


def plot_history(history: pd.DataFrame, title=""):
    """Loss and accuracy per epoch, training vs validation, with the fine-tuning start marked."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        axis.plot(history["epoch"], history[metric], marker="o", label="train")
        axis.plot(history["epoch"], history[f"val_{metric}"], marker="o", label="validation")
        finetune = history.loc[history["phase"] == "fine-tune", "epoch"]
        if len(finetune) and (history["phase"] == "frozen").any():
            axis.axvline(finetune.min() - 0.5, color="grey", linestyle="--", label="fine-tuning starts")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_predictions(frame: pd.DataFrame, probabilities, class_names, threshold=0.5, n=8, seed=0):
    """Random test images titled with true label and predicted probability; errors in red."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    picks = rng.choice(len(frame), size=min(n, len(frame)), replace=False)
    columns = min(4, len(picks))
    rows = int(np.ceil(len(picks) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    predicted = predicted_labels(probabilities, threshold)
    for axis, index in zip(axes.flat, picks, strict=False):
        row = frame.iloc[index]
        with Image.open(row["path"]) as image:
            axis.imshow(image.convert("RGB"))
        score = probabilities[index]
        shown = f"P({class_names[-1]})={score:.2f}" if np.ndim(score) == 0 else f"P={score.max():.2f}"
        correct = class_names[predicted[index]] == row["label"]
        axis.set_title(f"true {row['label']}\n{shown}", color="black" if correct else "red", fontsize=9)
    figure.tight_layout()
    return figure
