"""Controlled colour shifts, to measure how a skin model holds up when another clinic's camera,
light or software changes an image's colours.

First used in chapter "Skin lesions: evaluation" (notebooks/skin_03_evaluation.ipynb). Each
shift takes a batch of float RGB images in 0-255 (the input pipeline's batches) and an
``amount`` at which 0 leaves the images unchanged:

- ``saturation``: colours pulled towards their grey (negative) or pushed from it (positive),
  by the fraction ``amount``;
- ``hue``: every hue turned by ``amount`` of the colour circle (0.05 is 18 degrees);
- ``gamma``: intensities raised to the power ``2 ** amount`` (positive darkens mid-tones);
- ``white balance``: red scaled by ``1 + amount`` and blue by ``1 - amount``, a warmer
  (positive) or cooler (negative) light.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from medclass import calibration, evaluation, figures

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G and B in perceived brightness


def saturation(images, amount: float):
    grey = tf.reduce_sum(images * tf.constant(LUMA), axis=-1, keepdims=True)
    return tf.clip_by_value(grey + (images - grey) * (1.0 + amount), 0.0, 255.0)


def hue(images, amount: float):
    return tf.image.adjust_hue(images / 255.0, amount) * 255.0


def gamma(images, amount: float):
    return 255.0 * tf.pow(images / 255.0, 2.0**amount)


def white_balance(images, amount: float):
    return tf.clip_by_value(images * tf.constant([1.0 + amount, 1.0, 1.0 - amount]), 0.0, 255.0)


# Each shift and the amounts a robustness curve measures, mild to strong on either side.
SHIFTS = {
    "saturation": (saturation, (-0.6, -0.3, 0.3, 0.6)),
    "hue": (hue, (-0.06, -0.03, 0.03, 0.06)),
    "gamma": (gamma, (-0.5, -0.25, 0.25, 0.5)),
    "white balance": (white_balance, (-0.15, -0.075, 0.075, 0.15)),
}


def shift(images, kind: str, amount: float):
    """``images`` (float RGB, 0-255) under the colour shift ``kind`` of :data:`SHIFTS`."""
    if kind not in SHIFTS:
        raise ValueError(f"Unknown colour shift {kind!r}; choose one of {sorted(SHIFTS)}.")
    return SHIFTS[kind][0](tf.convert_to_tensor(images, tf.float32), amount)


def curve_sample(frame: pd.DataFrame, per_class: int, keep=(), seed: int = 0) -> pd.DataFrame:
    """The images a robustness curve is measured on: every image of the classes in ``keep`` and
    at most ``per_class`` of each other class, drawn at random. Each class's recall, and so the
    balanced accuracy, means the same on the sample as on ``frame``; accuracy does not."""
    parts = [
        rows if label in keep else rows.sample(min(per_class, len(rows)), random_state=seed)
        for label, rows in frame.groupby("label", sort=True)
    ]
    return pd.concat(parts).sort_index()


def robustness_curve(dataset, predict, score) -> pd.DataFrame:
    """``score(y_true, probabilities)`` (a dict of metrics) on ``dataset`` as it is and under
    every shift of :data:`SHIFTS`, one row per ``(shift, amount)``; ``predict(dataset)``
    returns ``(y_true, probabilities)``. The same images at every point, so each row differs
    from the unshifted one by the shift alone."""
    y_true, probabilities = predict(dataset)
    rows = [{"shift": "none", "amount": 0.0, **score(y_true, probabilities)}]
    for kind, (_, amounts) in SHIFTS.items():
        for amount in amounts:
            shifted = dataset.map(lambda images, labels, k=kind, a=amount: (shift(images, k, a), labels))
            rows.append({"shift": kind, "amount": amount, **score(*predict(shifted))})
    return pd.DataFrame(rows)


def plot_robustness(curve: pd.DataFrame, metrics, title: str = ""):
    """One panel per shift: each metric of ``metrics`` against the shift's amount, the
    unshifted value marked at 0."""
    kinds = [kind for kind in SHIFTS if kind in set(curve["shift"])]
    figure, axes = figures.panels(len(kinds), height=2.8, sharey=True)
    baseline = curve[curve["shift"] == "none"]
    for axis, kind in zip(np.atleast_1d(axes), kinds, strict=True):
        rows = pd.concat([baseline, curve[curve["shift"] == kind]]).sort_values("amount")
        for metric in metrics:
            axis.plot(rows["amount"], rows[metric], marker="o", label=metric)
        axis.axvline(0, color="grey", linestyle=":")
        axis.set_title(kind, fontsize=10)
        axis.set_xlabel("amount", fontsize=8)
        axis.tick_params(labelsize=7)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    figure.suptitle(title)
    return figure


def example_grid(image, title: str = ""):
    """One image under every shift at its strongest amounts: what the curve's points look like."""
    columns = [("none", 0.0)] + [
        (kind, amount) for kind, (_, amounts) in SHIFTS.items() for amount in (amounts[0], amounts[-1])
    ]
    figure, axes = figures.grid(1, len(columns), cell=(1.3, 1.75))
    batch = tf.convert_to_tensor(np.asarray(image, np.float32)[None])
    for axis, (kind, amount) in zip(axes[0], columns, strict=True):
        shown = batch if kind == "none" else shift(batch, kind, amount)
        axis.imshow(np.asarray(shown[0]).clip(0, 255).astype("uint8"))
        axis.set_title("as is" if kind == "none" else f"{kind}\n{amount:+g}", fontsize=7)
        axis.axis("off")
    figure.suptitle(title)
    return figure


def classifier_curve(model, dataset, temperature: float, positive: int, threshold: float) -> pd.DataFrame:
    """:func:`robustness_curve` of a softmax ``model`` calibrated with ``temperature``: balanced
    accuracy and accuracy (each image its most probable class), the sensitivity for class
    ``positive`` at ``P(positive) >= threshold``, and the share of images called ``positive``."""

    def predict(shifted):
        labels, raw = evaluation.predict_probabilities(model, shifted)
        return labels, calibration.apply_temperature(raw, temperature)

    def score(labels, probabilities):
        predicted, positives = probabilities.argmax(axis=1), labels == positive
        return {
            "balanced accuracy": evaluation.balanced_accuracy(labels, predicted),
            "accuracy": evaluation.accuracy(labels, predicted),
            "sensitivity": float(np.mean(probabilities[positives, positive] >= threshold))
            if positives.any()
            else float("nan"),
            "share called positive": float(np.mean(predicted == positive)),
        }

    return robustness_curve(dataset, predict, score)
