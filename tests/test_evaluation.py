"""Metrics against scikit-learn, bootstrap intervals, and the figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
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
    assert table.loc["average precision", "value"] == pytest.approx(
        metrics.average_precision_score(y_true, scores)
    )
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


def test_grouped_bootstrap_resamples_whole_lesions():
    rng = np.random.default_rng(2)
    # 100 lesions, 5 photographs each, all right or all wrong together.
    lesion_right = rng.uniform(size=100) < 0.8
    y = np.repeat(rng.integers(0, 2, 100), 5)
    p = np.where(np.repeat(lesion_right, 5), y, 1 - y).astype(float)
    groups = np.repeat(np.arange(100), 5)
    _, low_i, high_i = evaluation.bootstrap_interval(metrics.accuracy_score, y, p)
    _, low_g, high_g = evaluation.bootstrap_interval(metrics.accuracy_score, y, p, groups=groups)
    assert high_g - low_g > 1.8 * (high_i - low_i), "500 images of 100 lesions carry 100 draws' worth"


def test_multiclass_headline_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 4, 400)
    logits = np.eye(4)[y_true] * 1.5 + rng.normal(0, 1, (400, 4))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = evaluation.headline_metrics(y_true, probabilities, groups=np.arange(400) // 2)
    predicted = probabilities.argmax(axis=1)
    assert table.loc["macro-F1", "value"] == pytest.approx(
        metrics.f1_score(y_true, predicted, average="macro")
    )
    assert table.loc["weighted-F1", "value"] == pytest.approx(
        metrics.f1_score(y_true, predicted, average="weighted")
    )
    assert table.loc["ROC-AUC (macro, one-vs-rest)", "value"] == pytest.approx(
        metrics.roc_auc_score(y_true, probabilities, multi_class="ovr")
    )
    assert table.loc["average precision (macro)", "value"] == pytest.approx(
        np.mean([metrics.average_precision_score(y_true == k, probabilities[:, k]) for k in range(4)])
    )
    assert (table["ci_low"] < table["value"]).all() and (table["value"] < table["ci_high"]).all()
    figure = evaluation.plot_roc(y_true, probabilities, class_names=["a", "b", "c", "d"])
    assert len([line for line in figure.axes[0].lines if line.get_label() != "chance"]) == 4


def test_multiclass_predictions_and_report():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    y_true = np.array([0, 1, 2, 1])
    assert evaluation.predicted_labels(probabilities).tolist() == [0, 1, 2, 0]
    report = evaluation.classification_report(y_true, probabilities, ["a", "b", "c"])
    assert report.loc["b", "recall"] == pytest.approx(0.5)
    assert report.loc["b", "ROC-AUC"] == pytest.approx(
        metrics.roc_auc_score(y_true == 1, probabilities[:, 1])
    )
    assert report.loc["c", "average precision"] == pytest.approx(1.0)


def test_binary_report_scores_each_class_from_the_sigmoid(predictions):
    y_true, scores = predictions
    report = evaluation.classification_report(y_true, scores, ["Healthy", "Tumor"])
    assert report.loc["Tumor", "ROC-AUC"] == pytest.approx(metrics.roc_auc_score(y_true, scores))
    assert report.loc["Healthy", "ROC-AUC"] == pytest.approx(report.loc["Tumor", "ROC-AUC"])
    assert report.loc["Healthy", "average precision"] == pytest.approx(
        metrics.average_precision_score(1 - y_true, 1 - scores)
    )


def test_figures_render(predictions, history):
    y_true, scores = predictions
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
    stages = history.assign(phase=["frozen", "fine-tune 1", "fine-tune 2"])
    labels = [line.get_label() for line in evaluation.plot_history(stages).axes[0].lines]
    assert "fine-tune 1 starts" in labels and "fine-tune 2 starts" in labels


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.filterwarnings("ignore:F-score is ill-defined")
def test_the_bootstraps_numpy_metrics_are_scikit_learns():
    """The fast forms the bootstrap uses give scikit-learn's numbers: ties in the scores, classes
    absent from the labels or the predictions, a hundred random draws."""
    rng = np.random.default_rng(7)
    compared = 0
    for _ in range(100):
        n, k = int(rng.integers(6, 60)), int(rng.integers(3, 8))
        y = np.r_[0, 1, rng.integers(0, 2, n)]
        scores = np.round(rng.random(len(y)), int(rng.integers(1, 4)))  # many ties
        hard = (scores >= 0.5).astype(int)
        t, p = rng.integers(0, k, n), rng.integers(0, k, n)
        pairs = [
            (evaluation.roc_auc(y, scores), metrics.roc_auc_score(y, scores)),
            (evaluation.average_precision(y, scores), metrics.average_precision_score(y, scores)),
            (evaluation.accuracy(y, hard), metrics.accuracy_score(y, hard)),
            (evaluation.balanced_accuracy(t, p), metrics.balanced_accuracy_score(t, p)),
            (evaluation.recall_of(1)(y, hard), metrics.recall_score(y, hard, zero_division=0)),
            (evaluation.recall_of(0)(y, hard), metrics.recall_score(y, hard, pos_label=0, zero_division=0)),
        ]
        f1, support = evaluation.f1_scores(t, p, k)
        labels = np.arange(k)
        pairs += [
            (f1.mean(), metrics.f1_score(t, p, labels=labels, average="macro", zero_division=0)),
            (
                np.average(f1, weights=support),
                metrics.f1_score(t, p, labels=labels, average="weighted", zero_division=0),
            ),
        ]
        t = np.r_[labels, t]  # every class present, for the one-vs-rest scores
        probabilities = rng.dirichlet(np.ones(k), len(t))
        pairs += [
            (
                evaluation.one_vs_rest(evaluation.roc_auc, k)(t, probabilities),
                metrics.roc_auc_score(t, probabilities, multi_class="ovr", labels=labels),
            ),
            (
                evaluation.one_vs_rest(evaluation.average_precision, k)(t, probabilities),
                metrics.average_precision_score(np.eye(k)[t], probabilities, average="macro"),
            ),
        ]
        with pytest.raises(ValueError, match="both classes"):
            evaluation.roc_auc(np.zeros(5), scores[:5])
        for ours, theirs in pairs:
            assert ours == pytest.approx(theirs, abs=1e-12)
            compared += 1
    assert compared == 1000


def test_age_bands_name_each_age_and_the_missing():
    from medclass.evaluation import age_bands

    assert list(age_bands([5, 30, 44.9, 59, 74, 75, 85, None])) == [
        "under 30",
        "30-44",
        "30-44",
        "45-59",
        "60-74",
        "75 and over",
        "75 and over",
        "unknown",
    ]


@pytest.mark.case(
    "33.2",
    "a subgroup or headline proportion of 1.000 (every test image right, every tumour found)",
    "a Wilson interval on the groups' effective size, never [1.000, 1.000]; under 10 positives a count",
)
def test_subgroup_metrics_count_score_and_pool_each_group():
    from medclass.evaluation import subgroup_metrics

    # 30 male images (15 lesions, all right), 24 female (12 lesions, half wrong), 4 unknown
    subgroups = ["male"] * 30 + ["female"] * 24 + ["unknown"] * 4
    lesions = np.repeat(np.arange(29), 2)
    y_true = np.array([0, 1] * 15 + [0, 1] * 12 + [1, 0, 1, 0])
    predicted = y_true.copy()
    predicted[30:42] = 1 - predicted[30:42]
    probabilities = np.eye(3)[predicted] * 0.8 + 0.1 / 3
    table = subgroup_metrics(subgroups, y_true, probabilities, lesions, positive=1, threshold=0.5, seed=0)
    assert list(table.index) == ["male", "female", "unknown"]  # unknown: never pooled, last
    assert table.loc["male", ["images", "lesions", "positives"]].tolist() == [30, 15, 15]
    assert table.loc["female", "accuracy"].startswith("0.500 [")
    assert table.loc["male", "accuracy"] == "1.000 [0.796, 1.000]", "Wilson on 15 lesions, not a point"
    assert table.loc["female", "sensitivity"].startswith("0.500 [")
    assert table.loc["unknown", "images"] == 4
    assert table.loc["unknown", "sensitivity"] == "2 of 2 found", "under 10 positives: a count"
    small = ["a"] * 30 + ["b"] * 10 + ["c"] * 18
    ordered = subgroup_metrics(small, y_true, probabilities, lesions, 1, 0.5, order=["c", "b", "a"])
    assert list(ordered.index) == ["a", "other (each < 20)"]  # b and c pooled, the pool last


def test_subgroup_intervals_resample_lesions_not_images():
    """Ten photographs of each lesion, all right or all wrong: resampling lesions gives the
    interval that many images would hide."""
    from medclass.evaluation import bootstrap_interval, subgroup_metrics

    lesions = np.repeat(np.arange(30), 10)
    y_true = np.zeros(300, dtype=int)
    right = np.repeat(np.arange(30) % 3 != 0, 10)  # a third of the lesions wrong
    probabilities = np.where(right[:, None], [[0.9, 0.1]], [[0.1, 0.9]])

    def width(cell):
        low, high = (float(x) for x in cell.split("[")[1].rstrip("]").split(", "))
        return high - low

    by_lesion = subgroup_metrics(["all"] * 300, y_true, probabilities, lesions, 1, 0.5, seed=0)
    by_image = subgroup_metrics(["all"] * 300, y_true, probabilities, np.arange(300), 1, 0.5, seed=0)
    assert by_lesion.loc["all", "lesions"] == 30
    assert width(by_lesion.loc["all", "accuracy"]) > 2 * width(by_image.loc["all", "accuracy"])
    estimate, low, high = bootstrap_interval(lambda t, p: 0.5, y_true, y_true, n_resamples=0)
    assert estimate == 0.5 and np.isnan(low) and np.isnan(high)  # no resample: no interval


def test_the_seed_study_scores_each_seed_their_spread_and_their_ensemble():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    right = np.eye(3)[y_true] * 0.8 + 0.1 / 3
    wrong = np.eye(3)[[1, 0, 1, 2, 2, 0]] * 0.6 + 0.4 / 3
    table = evaluation.seed_study(y_true, {1: right, 2: wrong, 3: right})
    assert table.index.tolist() == [
        "seed 1",
        "seed 2",
        "seed 3",
        "mean of the seeds",
        "standard deviation",
        "ensemble of the seeds",
    ]
    assert table.loc["seed 1", "accuracy"] == 1.0 and table.loc["seed 2", "accuracy"] == 0.5
    assert table.loc["mean of the seeds", "accuracy"] == pytest.approx(5 / 6)
    assert table.loc["standard deviation", "accuracy"] == pytest.approx(np.std([1, 0.5, 1], ddof=1))
    assert table.loc["ensemble of the seeds", "accuracy"] == 1.0  # two right seeds outvote one
    assert table.loc["seed 2", "balanced accuracy"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least two seeds"):
        evaluation.seed_study(y_true, {1: right})


@pytest.mark.case(
    "33.2",
    "a headline sensitivity of 1.000 on 40 tumours from 20 patients",
    "its interval is Wilson's on the 20 patients, not the bootstrap's [1.000, 1.000]",
)
def test_a_perfect_headline_proportion_keeps_an_interval():
    from medclass.evaluation import headline_metrics

    y_true = np.array([1] * 40 + [0] * 40)
    scores = np.where(y_true == 1, 0.9, 0.1)
    scores[-1] = 0.95  # one false positive: specificity below 1
    patients = np.repeat(np.arange(40), 2)
    table = headline_metrics(y_true, scores, groups=patients)
    assert table.loc["sensitivity", "value"] == 1.0
    assert 0.8 < table.loc["sensitivity", "ci_low"] < 0.9 and table.loc["sensitivity", "ci_high"] == 1.0
    assert (
        table.loc["specificity", "ci_low"]
        < table.loc["specificity", "value"]
        < table.loc["specificity", "ci_high"]
    )
    assert list(table.index[:4]) == ["accuracy", "balanced accuracy", "sensitivity", "specificity"]


def test_flip_averaging_is_used_only_when_allowed_and_it_lowers_the_validation_log_loss():
    y = np.array([0, 1, 1, 0])
    sharp, vague = np.array([0.1, 0.9, 0.8, 0.2]), np.array([0.4, 0.6, 0.55, 0.45])
    assert evaluation.choose_tta(y, vague, sharp, allowed=True)[0] is True
    used, why = evaluation.choose_tta(y, sharp, vague, allowed=True)
    assert used is False and "did not lower" in why
    assert evaluation.choose_tta(y, vague, sharp, allowed=False)[0] is False
    three = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    assert evaluation.log_loss([0, 1], three) == pytest.approx(-np.log(0.8))
