"""Metrics against scikit-learn, bootstrap intervals, and the figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from medclass import evaluation


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 300)
    scores = np.clip(y_true * 0.6 + rng.normal(0.2, 0.25, 300), 0, 1)
    return y_true, scores


def test_headline_metrics_match_sklearn_and_carry_intervals(predictions):
    y_true, scores = predictions
    table = evaluation.headline_metrics(y_true, scores, threshold=0.5)
    predicted = (scores >= 0.5).astype(int)
    assert table.loc["accuracy", "value"] == pytest.approx(metrics.accuracy_score(y_true, predicted))
    assert table.loc["sensitivity", "value"] == pytest.approx(metrics.recall_score(y_true, predicted))
    assert table.loc["ROC-AUC", "value"] == pytest.approx(metrics.roc_auc_score(y_true, scores))
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    assert (table["ci_high"] - table["ci_low"] > 0.01).all()
    assert table.equals(evaluation.headline_metrics(y_true, scores, threshold=0.5))


def test_interval_narrows_with_more_data():
    rng = np.random.default_rng(1)

    def width(n):
        y = rng.integers(0, 2, n)
        p = np.where(rng.uniform(size=n) < 0.9, y, 1 - y).astype(float)
        _, low, high = evaluation.bootstrap_interval(metrics.accuracy_score, y, p)
        return high - low

    assert width(2000) < width(100) / 2


def test_multiclass_predictions_and_report():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    y_true = np.array([0, 1, 2, 1])
    assert evaluation.predicted_labels(probabilities).tolist() == [0, 1, 2, 0]
    report = evaluation.classification_report(y_true, probabilities, ["a", "b", "c"])
    assert report.loc["b", "recall"] == pytest.approx(0.5)


def test_figures_render(predictions):
    y_true, scores = predictions
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "phase": ["frozen", "frozen", "fine-tune"],
            "loss": [0.7, 0.5, 0.4],
            "val_loss": [0.6, 0.5, 0.45],
            "accuracy": [0.6, 0.7, 0.8],
            "val_accuracy": [0.6, 0.65, 0.7],
        }
    )
    for figure in (
        evaluation.plot_confusion_matrix(y_true, scores, ["Healthy", "Tumor"]),
        evaluation.plot_roc(y_true, scores),
        evaluation.plot_history(history),
    ):
        assert figure.axes
    boundary = [
        line
        for line in evaluation.plot_history(history).axes[0].lines
        if line.get_label() == "fine-tuning starts"
    ]
    assert boundary and boundary[0].get_xdata()[0] == 2.5
