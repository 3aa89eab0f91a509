"""Evaluation where both labels come from one source: LGG's slices with and without tumour from
the same patients, scanners and sequences, so that neither source nor sequence gives the label
away.

Per sequence: ROC-AUC, and sensitivity and specificity at the operating threshold; the same on
slices matched for how much brain they show and where they lie in the head (tumour-free slices
are more often near the top or bottom, with little brain: a model could score by that alone);
and sensitivity by tumour size. Patients are the unit of resampling: a patient's slices are
not independent.

First used in chapter "Brain MRI: evaluation" (notebooks/brain_03_evaluation.ipynb); also
used by ``medclass.report`` and ``benchmarks/brain_shortcut.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medclass import evaluation, figures
from medclass.intervals import clustered_wilson

# Matched slices: at least this share of the slice is brain (the shared data's README compares
# tumour and tumour-free slices here), and the slice lies within the central range of positions
# where the evaluated patients' tumours lie (MATCHED_QUANTILES of their slice positions).
MATCHED_BRAIN_AREA = 0.25
MATCHED_QUANTILES = (0.1, 0.9)
# Tumour size bins, as a share of the slice's pixels (a 256x256 slice: 0.5% is about 330 pixels).
SIZE_BINS = (0.0, 0.005, 0.01, 0.02, 0.04, 1.0)
# Fewer patients than this give no ROC-AUC interval: a bootstrap over two or three patients has
# a handful of distinct resamples, and its interval would pretend to a precision it lacks.
MIN_PATIENTS = 5
# A size bin "finds tumours" from where its sensitivity's lower bound reaches this.
FOUND_FROM = 0.8


def matched(frame: pd.DataFrame) -> pd.Series:
    """Which rows are matched slices: enough brain, and inside the central range of the tumour
    slices' positions (see ``MATCHED_BRAIN_AREA`` and ``MATCHED_QUANTILES``)."""
    positions = frame.loc[frame["label"] == "Tumor", "slice_position"]
    if positions.empty:
        return frame["brain_area"] >= MATCHED_BRAIN_AREA
    low, high = positions.quantile(list(MATCHED_QUANTILES))
    return (frame["brain_area"] >= MATCHED_BRAIN_AREA) & frame["slice_position"].between(low, high)


def scores(y_true, probabilities, threshold, patients, seed: int = 0) -> dict:
    """ROC-AUC (patient bootstrap) and sensitivity and specificity at ``threshold`` (clustered
    Wilson), with 95% intervals and the counts behind them."""
    y_true, probabilities, patients = (np.asarray(x) for x in (y_true, probabilities, patients))
    positive = y_true == 1
    row = {
        "slices": len(y_true),
        "patients": len(np.unique(patients)),
        "tumour slices": int(positive.sum()),
    }
    if positive.any() and (~positive).any():
        auc = evaluation.bootstrap_interval(
            evaluation.roc_auc, y_true, probabilities, seed=seed, groups=patients
        )
        if row["patients"] < MIN_PATIENTS:
            auc = (auc[0], float("nan"), float("nan"))
    else:
        auc = (float("nan"),) * 3
    called = probabilities >= threshold
    sensitivity = clustered_wilson(called[positive], patients[positive])
    specificity = clustered_wilson(~called[~positive], patients[~positive])
    for name, values in (("ROC-AUC", auc), ("sensitivity", sensitivity), ("specificity", specificity)):
        row |= {name: values[0], f"{name} low": values[1], f"{name} high": values[2]}
    return row


def sequence_table(frame: pd.DataFrame, probabilities, threshold: float, seed: int = 0) -> pd.DataFrame:
    """One row per slice set (all slices, matched slices) and sequence (each, and all together):
    :func:`scores` at ``threshold``."""
    probabilities = np.asarray(probabilities, dtype=float)
    y_true = (frame["label"] == "Tumor").to_numpy().astype(int)
    subsets = {"all slices": np.ones(len(frame), bool), "matched slices": matched(frame).to_numpy()}
    rows = []
    for subset, chosen in subsets.items():
        for sequence in [*frame["sequence"].drop_duplicates().sort_values(), "all sequences"]:
            rows_in = chosen & ((frame["sequence"] == sequence).to_numpy() | (sequence == "all sequences"))
            if not rows_in.any():
                continue
            row = scores(
                y_true[rows_in], probabilities[rows_in], threshold, frame["patient"].to_numpy()[rows_in], seed
            )
            rows.append({"slices used": subset, "sequence": sequence, **row})
    return pd.DataFrame(rows).set_index(["slices used", "sequence"])


def size_table(frame: pd.DataFrame, probabilities, threshold: float) -> pd.DataFrame:
    """Sensitivity at ``threshold`` by tumour size (share of the slice), per sequence, with
    clustered Wilson intervals; bins with fewer than 10 tumour slices give counts only."""
    probabilities = np.asarray(probabilities, dtype=float)
    tumours = (frame["label"] == "Tumor").to_numpy()
    bins = pd.cut(frame["tumour_area"], SIZE_BINS, right=False)
    rows = []
    for sequence in frame["sequence"].drop_duplicates().sort_values():
        for size_bin in bins.cat.categories:
            chosen = tumours & (frame["sequence"] == sequence).to_numpy() & (bins == size_bin).to_numpy()
            found = probabilities[chosen] >= threshold
            share, low, high = clustered_wilson(found, frame["patient"].to_numpy()[chosen])
            enough = chosen.sum() >= 10
            rows.append(
                {
                    "sequence": sequence,
                    "tumour area": f"{size_bin.left:.1%}-{size_bin.right:.1%}"
                    if size_bin.right < 1
                    else f">= {size_bin.left:.1%}",
                    "area from": size_bin.left,
                    "tumour slices": int(chosen.sum()),
                    "found": int(found.sum()),
                    "sensitivity": share if enough else float("nan"),
                    "sensitivity low": low if enough else float("nan"),
                    "sensitivity high": high if enough else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def found_from(sizes: pd.DataFrame, sequence: str) -> float | None:
    """The smallest tumour area from which every bin of ``sequence`` with enough slices has a
    sensitivity whose lower bound reaches ``FOUND_FROM``; None when even the largest does not."""
    rows = sizes[(sizes["sequence"] == sequence) & sizes["sensitivity low"].notna()].sort_values("area from")
    start = None
    for area, low in zip(rows["area from"], rows["sensitivity low"], strict=True):
        if low >= FOUND_FROM:
            start = area if start is None else start
        else:
            start = None
    return start


def describe(table: pd.DataFrame, sizes: pd.DataFrame, threshold: float) -> str:
    """The sentences the chapter and the model card print under the tables."""
    lines = []
    for sequence in [name for name in table.loc["all slices"].index if name != "all sequences"]:
        row = table.loc[("all slices", sequence)]
        start = found_from(sizes, sequence)
        if row["specificity"] < 0.5:
            where = (
                "it calls most tumour-free slices Tumor too, so its sensitivity, at any tumour size, "
                "says little about tumours"
            )
        elif start is not None:
            where = (
                f"it finds tumours from {start:.1%} of the slice on (sensitivity's lower bound >= "
                f"{FOUND_FROM})"
            )
        else:
            where = f"at no tumour size does the sensitivity's lower bound reach {FOUND_FROM}"
        lines.append(
            f"- {sequence}: ROC-AUC {interval(row, 'ROC-AUC')}; at P(Tumor) >= {threshold:.3f} sensitivity "
            f"{interval(row, 'sensitivity')}, specificity {interval(row, 'specificity')}; {where}."
        )
    return "\n".join(lines)


def interval(row, name: str) -> str:
    if pd.isna(row[name]):
        return "not defined (one class only)"
    if pd.isna(row[name + " low"]):
        return f"{row[name]:.3f} (too few patients for an interval)"
    return f"{row[name]:.3f} [{row[name + ' low']:.3f}, {row[name + ' high']:.3f}]"


def markdown(table: pd.DataFrame) -> str:
    """:func:`sequence_table` as a markdown table, each value with its interval."""
    lines = [
        "| slices | sequence | slices (patients) | tumour slices | ROC-AUC | sensitivity | specificity |",
        "|---|---|---|---|---|---|---|",
    ]
    for (subset, sequence), row in table.iterrows():
        lines.append(
            f"| {subset} | {sequence} | {int(row['slices'])} ({int(row['patients'])}) | "
            f"{int(row['tumour slices'])} | {interval(row, 'ROC-AUC')} | {interval(row, 'sensitivity')} | "
            f"{interval(row, 'specificity')} |"
        )
    return "\n".join(lines)


def size_markdown(sizes: pd.DataFrame) -> str:
    """:func:`size_table` as a markdown table; bins under 10 tumour slices as counts."""
    lines = ["| sequence | tumour area | found / tumour slices | sensitivity |", "|---|---|---|---|"]
    for _, row in sizes.iterrows():
        rate = "counts only" if pd.isna(row["sensitivity"]) else interval(row, "sensitivity")
        lines.append(
            f"| {row['sequence']} | {row['tumour area']} | {row['found']} / {row['tumour slices']} | {rate} |"
        )
    return "\n".join(lines)


def plot_roc_by_sequence(frame: pd.DataFrame, probabilities, title: str = ""):
    """One ROC curve per sequence, each with its area, on one axis."""
    from sklearn.metrics import roc_curve

    probabilities = np.asarray(probabilities, dtype=float)
    figure, axis = figures.panels(1, height=3.6)
    for sequence in frame["sequence"].drop_duplicates().sort_values():
        chosen = (frame["sequence"] == sequence).to_numpy()
        y_true = (frame.loc[chosen, "label"] == "Tumor").to_numpy().astype(int)
        if len(set(y_true)) < 2:
            continue
        false_positive, true_positive, _ = roc_curve(y_true, probabilities[chosen])
        area = evaluation.roc_auc(y_true, probabilities[chosen])
        axis.plot(false_positive, true_positive, label=f"{sequence} (AUC {area:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    axis.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    axis.legend(fontsize=8)
    return figure
