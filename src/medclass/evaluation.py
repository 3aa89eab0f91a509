"""Evaluation on the held-out test split: metrics with bootstrap intervals, and figures.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb) (the training
history); explained in chapter "Brain MRI: evaluation" (notebooks/brain_03_evaluation.ipynb).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn import metrics

from medclass import figures
from medclass.images import read_rgb
from medclass.intervals import clustered_wilson

# Fewer positive images than this in a subgroup are reported as a count, not a rate.
MIN_POSITIVES_FOR_A_RATE = 10


def predict_batch(model, images, tta: bool = False) -> np.ndarray:
    """Probabilities for one batch of images; a sigmoid model's single column comes back as a
    vector of P(positive). With ``tta`` (test-time augmentation) each image is also predicted
    flipped left-right, and the two probabilities are averaged."""
    from keras import ops

    predicted = np.asarray(model.predict_on_batch(images), dtype="float32")  # compiled, inference mode
    if tta:
        flipped = np.asarray(model.predict_on_batch(ops.flip(images, axis=2)), dtype="float32")
        predicted = (predicted + flipped) / 2
    return predicted[:, 0] if predicted.shape[-1] == 1 else predicted


def predict_probabilities(model, dataset, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(labels, probabilities)`` for every batch of ``dataset``, in order.

    Labels come back as class indices, whether the dataset holds indices or one-hot rows;
    probabilities as :func:`predict_batch` gives them, with or without ``tta``.
    """
    labels, probabilities = [], []
    for images, batch_labels in dataset:
        probabilities.append(predict_batch(model, images, tta))
        batch_labels = np.asarray(batch_labels)
        labels.append(batch_labels.argmax(axis=1) if batch_labels.ndim == 2 else batch_labels)
    return np.concatenate(labels).astype(int), np.concatenate(probabilities)


def as_columns(probabilities: np.ndarray) -> np.ndarray:
    """One column per class: a sigmoid vector P(positive) becomes ``[1 - p, p]``."""
    probabilities = np.asarray(probabilities, dtype="float64")
    return np.stack([1 - probabilities, probabilities], axis=1) if probabilities.ndim == 1 else probabilities


def log_loss(y_true, probabilities) -> float:
    """Mean cross-entropy of the true classes, unweighted (no class weights, no logit adjustment)."""
    columns = np.clip(as_columns(probabilities), 1e-7, 1)
    columns = columns / columns.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 +- 1e-7
    return float(metrics.log_loss(y_true, columns, labels=list(range(columns.shape[1]))))


def choose_tta(y_val, plain, flipped, allowed: bool) -> tuple[bool, str]:
    """The rule for test-time augmentation, applied on validation: flip averaging is used when
    ``allowed`` (the chapter's ``tta`` parameter) and it lowers the validation log-loss, a
    threshold-free score of every probability. Returns the decision and a sentence saying why."""
    without, with_flips = log_loss(y_val, plain), log_loss(y_val, flipped)
    scores = f"validation log-loss {without:.4f} without flip averaging, {with_flips:.4f} with it"
    if not allowed:
        return False, f"Flip averaging is off (tta=False); {scores}."
    if with_flips < without:
        return True, f"Flip averaging is used: it lowered the {scores}."
    return False, f"Flip averaging is not used: it did not lower the {scores}."


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
    groups: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """``(estimate, low, high)``: the metric and its percentile bootstrap interval.

    Resamples images, or with ``groups`` (a lesion or patient id per image) whole groups, so
    that several photographs of one lesion count as one draw: images of one lesion are not
    independent, and resampling them one by one would make the interval too narrow.
    """
    rng = np.random.default_rng(seed)
    estimate = metric(y_true, y_score)
    if groups is None:
        members = [np.array([i]) for i in range(len(y_true))]
    else:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    values = []
    for _ in range(n_resamples):
        index = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        if len(np.unique(y_true[index])) < len(np.unique(y_true)):
            continue  # a class went missing: AUC and balanced accuracy are undefined or shifted
        values.append(metric(y_true[index], y_score[index]))
    if not values:  # every resample lost a class: too few groups to say
        return float(estimate), float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(estimate), float(low), float(high)


# Exact NumPy forms of scikit-learn's metrics for the bootstrap's thousand resamples: the same
# numbers (tests/test_evaluation.py compares them), about a hundred times faster, because
# scikit-learn checks its inputs on every call. Labels are class indices 0, 1, ...


def recall_of(label: int):
    """Recall of one class: sensitivity for ``label=1``, specificity for ``label=0``."""

    def recall(y_true, y_pred):
        members = y_true == label
        return float(np.mean(y_pred[members] == label)) if members.any() else 0.0

    return recall


def accuracy(y_true, y_pred) -> float:
    return float(np.mean(y_true == y_pred))


def balanced_accuracy(y_true, y_pred) -> float:
    """The mean recall over the classes present in ``y_true``."""
    return float(np.mean([np.mean(y_pred[y_true == k] == k) for k in np.unique(y_true)]))


def roc_auc(y_true, scores) -> float:
    """Binary ROC-AUC as the Mann-Whitney statistic (ties count a half)."""
    from scipy.stats import rankdata

    positives = np.asarray(y_true) == 1
    n_positive, n_negative = positives.sum(), (~positives).sum()
    if not n_positive or not n_negative:
        raise ValueError("ROC-AUC needs both classes in y_true.")
    rank_sum = rankdata(scores)[positives].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def average_precision(y_true, scores) -> float:
    """Binary average precision: precision at each distinct threshold, weighted by the recall
    it adds (scikit-learn's step-wise definition, no interpolation)."""
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    ranked, hits = np.asarray(scores)[order], (np.asarray(y_true) == 1)[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    true_positives = np.cumsum(hits)[last_of_each_score]
    if not true_positives[-1]:
        raise ValueError("Average precision needs a positive in y_true.")
    precision = true_positives / (last_of_each_score + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_scores(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 (0 for a class neither present nor predicted) and per-class support."""
    true_positives = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    support = np.bincount(y_true, minlength=num_classes)
    denominator = np.bincount(y_pred, minlength=num_classes) + support
    return np.where(denominator > 0, 2 * true_positives / np.maximum(denominator, 1), 0.0), support


def macro_f1(y_true, y_pred, num_classes: int) -> float:
    """The unweighted mean of the per-class F1 scores: every class counts the same."""
    return float(np.mean(f1_scores(y_true, y_pred, num_classes)[0]))


def weighted_f1(y_true, y_pred, num_classes: int) -> float:
    f1, support = f1_scores(y_true, y_pred, num_classes)
    return float(np.average(f1, weights=support))


def one_vs_rest(metric, num_classes: int):
    """The macro mean of a binary score metric over the classes, each against the rest."""
    return lambda y_true, scores: float(
        np.mean([metric(y_true == k, scores[:, k]) for k in range(num_classes)])
    )


def headline_metrics(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    threshold: float = 0.5,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> pd.DataFrame:
    """The headline metrics with 95% intervals, over ``groups`` (patients, lesions, copies)
    when given.

    Binary (a vector of P(positive)): accuracy, balanced accuracy, sensitivity, specificity,
    ROC-AUC and average precision (the area under the precision-recall curve). Multi-class
    (one softmax row per image): accuracy, balanced accuracy, macro-F1, weighted-F1, and the
    macro one-vs-rest ROC-AUC and average precision. Proportions (accuracy, sensitivity,
    specificity) get Wilson intervals on the groups' effective sample size
    (:func:`medclass.intervals.clustered_wilson`), which never collapse at 0 or 1; the other
    metrics a percentile bootstrap over groups.
    """
    y_true = np.asarray(y_true).astype(int)
    groups = np.arange(len(y_true)) if groups is None else np.asarray(groups)
    predicted = predicted_labels(probabilities, threshold)
    proportions = {"accuracy": (predicted == y_true, np.ones(len(y_true), bool))}
    if probabilities.ndim == 1:
        proportions["sensitivity"] = (predicted == 1, y_true == 1)
        proportions["specificity"] = (predicted == 0, y_true == 0)

    def at_threshold(metric):
        return lambda labels, scores: metric(labels, predicted_labels(scores, threshold))

    scores = {"balanced accuracy": at_threshold(balanced_accuracy)}
    if probabilities.ndim == 1:
        scores["ROC-AUC"] = roc_auc
        scores["average precision"] = average_precision
    else:
        k = probabilities.shape[1]
        scores["macro-F1"] = at_threshold(lambda t, p: macro_f1(t, p, k))
        scores["weighted-F1"] = at_threshold(lambda t, p: weighted_f1(t, p, k))
        if len(np.unique(y_true)) == k:
            scores["ROC-AUC (macro, one-vs-rest)"] = one_vs_rest(roc_auc, k)
            scores["average precision (macro)"] = one_vs_rest(average_precision, k)
    rows = {}
    for name, (hits, among) in proportions.items():
        rows[name] = clustered_wilson(hits[among], groups[among])
    for name, metric in scores.items():
        rows[name] = bootstrap_interval(metric, y_true, probabilities, seed=seed, groups=groups)
    order = ["accuracy", "balanced accuracy", "sensitivity", "specificity"]
    names = [name for name in order if name in rows] + [name for name in rows if name not in order]
    table = pd.DataFrame([rows[name] for name in names], index=names, columns=["value", "ci_low", "ci_high"])
    return table.rename_axis("metric")


AGE_BANDS = (
    (0, 30, "under 30"),
    (30, 45, "30-44"),
    (45, 60, "45-59"),
    (60, 75, "60-74"),
    (75, 200, "75 and over"),
)


def age_bands(ages) -> pd.Series:
    """Each age as its band of :data:`AGE_BANDS` ("unknown" where missing)."""
    ages = pd.Series(ages, dtype="float64").reset_index(drop=True)
    bands = pd.Series("unknown", index=ages.index, dtype=object)
    for low, high, name in AGE_BANDS:
        bands[(ages >= low) & (ages < high)] = name
    return bands


def _pooled_subgroups(subgroups, min_images: int, order) -> tuple[pd.Series, list[str]]:
    """The subgroups with those under ``min_images`` pooled (never "unknown"), and their names
    in :func:`subgroup_metrics`'s order."""
    subgroups = pd.Series(subgroups).reset_index(drop=True).astype(str)
    counts = subgroups.value_counts()
    pooled = f"other (each < {min_images})"
    small = [name for name in counts.index[counts < min_images] if name != "unknown"]
    if small:
        subgroups = subgroups.where(~subgroups.isin(small), pooled)
    present = list(subgroups.value_counts().index)
    rank = {name: position for position, name in enumerate(order or [])}
    names = sorted(
        present,
        key=lambda name: (
            name in (pooled, "unknown"),
            name == "unknown",
            rank.get(name, len(rank)),
            present.index(name),
        ),
    )
    return subgroups, names


def subgroup_metrics(
    subgroups,
    y_true,
    probabilities,
    groups,
    positive: int,
    threshold: float,
    seed: int = 0,
    min_images: int = 20,
    order=None,
) -> pd.DataFrame:
    """The test metrics within each subgroup (a value per image: sex, age band, body site),
    with 95% intervals over ``groups`` (lesions) inside the subgroup: the model-card
    practice of disaggregated evaluation (Mitchell et al. 2019).

    Columns: images, lesions, accuracy (a Wilson interval on the lesions' effective sample
    size) and balanced accuracy (bootstrap over lesions), each image its most probable class;
    the number of positive images and the sensitivity for class ``positive`` at
    ``P(positive) >= threshold``: a rate with a Wilson interval from
    :data:`MIN_POSITIVES_FOR_A_RATE` positives, below that a count ("3 of 4 found").
    Subgroups of fewer than ``min_images`` images are pooled into "other (each < N)", listed
    last with "unknown" (never pooled); the others come in ``order`` (names), else largest
    first. A bootstrap interval is missing where too few lesions make one.
    """
    subgroups, names = _pooled_subgroups(subgroups, min_images, order)
    y_true, groups = np.asarray(y_true).astype(int), np.asarray(groups)
    predicted = predicted_labels(probabilities)
    flagged = (np.asarray(probabilities)[:, positive] >= threshold).astype(int)

    def shown(estimate, low, high):
        return f"{estimate:.3f}" if np.isnan(low) else f"{estimate:.3f} [{low:.3f}, {high:.3f}]"

    rows = {}
    for name in names:
        members = (subgroups == name).to_numpy()
        truth, lesions = y_true[members], groups[members]
        row = {"images": int(members.sum()), "lesions": len(set(lesions))}
        row["accuracy"] = shown(*clustered_wilson(predicted[members] == truth, lesions))
        row["balanced accuracy"] = shown(
            *bootstrap_interval(balanced_accuracy, truth, predicted[members], seed=seed, groups=lesions)
        )
        is_positive = truth == positive
        row["positives"] = int(is_positive.sum())
        found = flagged[members][is_positive] == 1
        if row["positives"] >= MIN_POSITIVES_FOR_A_RATE:
            row["sensitivity"] = shown(*clustered_wilson(found, lesions[is_positive]))
        else:  # a rate of 1 to 9 positives would claim a precision they cannot give
            row["sensitivity"] = (
                f"{int(found.sum())} of {row['positives']} found" if row["positives"] else "–"
            )
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def detection_rate(
    probabilities: np.ndarray, threshold: float, groups: np.ndarray | None = None, seed: int = 0
) -> tuple[float, float, float]:
    """``(sensitivity, low, high)`` on a set of positive images only, such as a second source's
    tumour slices: the share called positive at ``threshold``, with a 95% Wilson interval on the
    images or, with ``groups``, on the duplicate groups' effective sample size (``seed`` is
    kept for callers; the interval has no randomness)."""
    probabilities = np.asarray(probabilities, dtype="float64")
    if probabilities.ndim != 1 or not len(probabilities):
        raise ValueError("detection_rate needs a non-empty vector of P(positive).")
    groups = np.arange(len(probabilities)) if groups is None else np.asarray(groups)
    return clustered_wilson(probabilities >= threshold, groups)


SEED_METRICS = ("balanced accuracy", "macro-F1", "accuracy", "weighted-F1")


def seed_study(y_true, probabilities_by_seed: dict) -> pd.DataFrame:
    """The argmax metrics of each seed's model, their mean and standard deviation, and those of
    the seeds' ensemble (the mean of their probabilities): how much of a result is the draw of
    one training run. ``probabilities_by_seed`` maps a seed to its softmax rows."""
    if len(probabilities_by_seed) < 2:
        raise ValueError("A seed study needs the models of at least two seeds.")
    y_true = np.asarray(y_true).astype(int)

    def row(probabilities):
        predicted, k = predicted_labels(probabilities), probabilities.shape[1]
        return {
            "balanced accuracy": balanced_accuracy(y_true, predicted),
            "macro-F1": macro_f1(y_true, predicted, k),
            "accuracy": accuracy(y_true, predicted),
            "weighted-F1": weighted_f1(y_true, predicted, k),
        }

    table = pd.DataFrame({f"seed {seed}": row(p) for seed, p in probabilities_by_seed.items()}).T
    summary = pd.DataFrame({"mean of the seeds": table.mean(), "standard deviation": table.std(ddof=1)}).T
    ensemble = row(np.mean(list(probabilities_by_seed.values()), axis=0))
    return pd.concat([table, summary, pd.DataFrame({"ensemble of the seeds": ensemble}).T])[
        list(SEED_METRICS)
    ]


def classification_report(
    y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str], threshold: float = 0.5
) -> pd.DataFrame:
    """Scikit-learn's per-class precision, recall, F1 and support, as a DataFrame, with each
    class's one-vs-rest ROC-AUC and average precision (threshold-free) beside them."""
    report = metrics.classification_report(
        y_true,
        predicted_labels(probabilities, threshold),
        labels=range(len(class_names)),
        target_names=list(class_names),
        output_dict=True,
        zero_division=0,
    )
    table = pd.DataFrame(report).T
    columns = as_columns(probabilities)
    for index, name in enumerate(class_names):
        truth = np.asarray(y_true) == index
        if truth.any() and not truth.all():
            table.loc[name, "ROC-AUC"] = metrics.roc_auc_score(truth, columns[:, index])
            table.loc[name, "average precision"] = metrics.average_precision_score(truth, columns[:, index])
    return table


def plot_confusion_matrix(y_true, probabilities, class_names, threshold=0.5, title=""):
    """Counts and row-normalised confusion matrices, side by side."""
    predicted = predicted_labels(probabilities, threshold)
    figure, axes = figures.panels(2, height=3.9 if len(class_names) <= 3 else 4.4)
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
        if len(class_names) > 3:
            axis.tick_params(axis="x", labelrotation=45)
            for text in axis.texts:
                text.set_fontsize(8)
    figure.suptitle(title)
    return figure


def plot_roc(y_true, probabilities, title="", class_names=None):
    """ROC curve of a binary classifier, or one-vs-rest curves per class; AUCs in the legend."""
    figure, axis = plt.subplots(figsize=(5.2, 4.6))
    if probabilities.ndim == 1:
        metrics.RocCurveDisplay.from_predictions(y_true, probabilities, ax=axis, name="model")
    else:
        names = class_names or [str(i) for i in range(probabilities.shape[1])]
        for index, name in enumerate(names):
            if (y_true == index).any() and not (y_true == index).all():
                metrics.RocCurveDisplay.from_predictions(
                    y_true == index, probabilities[:, index], ax=axis, name=name
                )
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    axis.set_title(title or "ROC curve")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def plot_history(history: pd.DataFrame, title=""):
    """Loss and accuracy per epoch, training vs validation, with each phase's start marked."""
    figure, axes = figures.panels(2, height=3.4)
    starts = history.groupby("phase", sort=False)["epoch"].min().iloc[1:]
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        axis.plot(history["epoch"], history[metric], marker="o", label="train")
        axis.plot(history["epoch"], history[f"val_{metric}"], marker="o", label="validation")
        for phase, first_epoch in starts.items():
            label = "fine-tuning starts" if phase == "fine-tune" else f"{phase} starts"
            axis.axvline(first_epoch - 0.5, color="grey", linestyle="--", label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    return figure


def plot_precision_recall(y_true, probabilities, class_names, title=""):
    """Precision-recall curves (binary: for the positive class; else one per class), with AP."""
    figure, axis = plt.subplots(figsize=(5.2, 4.6))
    if probabilities.ndim == 1:
        metrics.PrecisionRecallDisplay.from_predictions(y_true, probabilities, ax=axis, name=class_names[-1])
    else:
        for index, name in enumerate(class_names):
            if (y_true == index).any():
                metrics.PrecisionRecallDisplay.from_predictions(
                    y_true == index, probabilities[:, index], ax=axis, name=name
                )
    axis.set_title(title or "Precision-recall")
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    return figure


def confident_errors(
    frame: pd.DataFrame, y_true, scores, positive: int, threshold: float, kind: str, n: int = 6
) -> pd.DataFrame:
    """The ``n`` most confident mistakes about class ``positive`` at ``threshold``.

    ``kind="false negative"``: positives scored lowest below the threshold (missed cases);
    ``kind="false positive"``: negatives scored highest above it. ``scores`` are the
    probabilities of ``positive`` (for a sigmoid model, the model's output itself). Copies of one
    image (rows of one ``group``) are shown once, the most confident of them.
    """
    if kind not in ("false negative", "false positive"):
        raise ValueError(f"kind={kind!r}; use 'false negative' or 'false positive'.")
    table = frame.reset_index(drop=True).assign(score=np.asarray(scores), truth=np.asarray(y_true))
    if kind == "false negative":
        wrong = table[(table.truth == positive) & (table.score < threshold)].sort_values("score")
    else:
        wrong = table[(table.truth != positive) & (table.score >= threshold)].sort_values(
            "score", ascending=False
        )
    if "group" in wrong:
        wrong = wrong.drop_duplicates("group")
    return wrong.head(n)


def plot_gallery(errors: pd.DataFrame, score_name: str, title: str = ""):
    """The images of :func:`confident_errors` as the model read them (:mod:`medclass.images`),
    titled with their true label and score. With no error to show it draws no figure, says so
    in a line, and returns None."""
    if errors.empty:
        print(f"{title or 'Errors'}: none.")
        return None
    columns = max(1, min(6, len(errors)))
    figure, axes = figures.grid(1, columns, cell=(2.0, 2.5))
    for axis in axes.flat:
        axis.axis("off")
    for axis, (_, row) in zip(axes.flat, errors.iterrows(), strict=False):
        axis.imshow(read_rgb(row["path"]))
        axis.set_title(f"true {row['label']}\n{score_name}={row['score']:.3f}", fontsize=8, color="red")
    figure.suptitle(title)
    return figure
