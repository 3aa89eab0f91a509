"""What a training run minimises when the classes are not equally common: class weights, the
logit-adjusted loss, and the validation loss weighted like the training loss.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb) (class weights);
the logit-adjusted loss in chapter "Skin lesions: training" (notebooks/skin_02_training.ipynb).
"""

from __future__ import annotations

import keras
import pandas as pd
from keras import ops

LOSSES = ("crossentropy", "focal", "logit_adjusted")
# The chapters' ``imbalance`` parameter -> the loss it trains with (class weights go to ``fit``).
LOSS_FOR_IMBALANCE = {
    "class_weight": "crossentropy",
    "focal": "focal",
    "logit_adjusted": "logit_adjusted",
    "none": "crossentropy",
}


@keras.saving.register_keras_serializable(package="medclass")
class LogitAdjustedCrossentropy(keras.losses.Loss):
    """Cross-entropy on the model's logits plus the log of each class's share of the training
    data (Menon et al. 2021, "Long-tail learning via logit adjustment").

    The training data's frequencies are added back inside the loss, so the model's own logits
    need not learn them: its softmax estimates which class the image shows as if every class
    were equally common, the rule that balanced accuracy rewards, without reweighting images
    (a dermatofibroma is not counted fifty times). Multiplying its probabilities by the prior
    again (:func:`medclass.calibration.shift_to_prior`) gives the rule that accuracy rewards.
    Takes the softmax output (one-hot or mixed labels), so the model stays as it is.
    """

    def __init__(self, prior, name: str = "logit_adjusted_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.prior = [float(share) for share in prior]
        if not self.prior or min(self.prior) <= 0 or abs(sum(self.prior) - 1) > 1e-3:
            raise ValueError(f"prior={self.prior}: give every class a positive share, summing to 1.")

    def call(self, y_true, y_pred):

        log_prior = ops.log(ops.convert_to_tensor(self.prior, "float32"))
        logits = ops.log(ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0)) + log_prior
        return keras.losses.categorical_crossentropy(y_true, logits, from_logits=True)

    def get_config(self):
        return {**super().get_config(), "prior": self.prior}


def class_prior(labels: pd.Series, class_names: list[str]) -> list[float]:
    """Each class's share of ``labels``, in the order of ``class_names`` (a class with no image
    gets a share of one image, so its log stays finite)."""
    counts = labels.value_counts()
    shares = [max(int(counts.get(name, 0)), 1) for name in class_names]
    return [count / sum(shares) for count in shares]


def balanced_class_weight(labels: pd.Series, class_names: list[str]) -> dict[int, float]:
    """Weights inversely proportional to class frequency, as scikit-learn's "balanced"."""
    counts = labels.value_counts()
    return {
        index: float(len(labels) / (len(class_names) * counts.get(name, 1)))
        for index, name in enumerate(class_names)
    }


def example_weights(labels, class_weight: dict[int, float]):
    """Per-example weights for 0/1 labels or one-hot rows (mixed rows weigh proportionally);
    ``labels`` may be a NumPy array or a tensor inside ``tf.data``."""

    table = ops.convert_to_tensor([class_weight[i] for i in range(len(class_weight))], "float32")
    if len(labels.shape) == 1:
        return ops.take(table, ops.cast(labels, "int32"))
    return ops.sum(ops.cast(labels, "float32") * table, axis=-1)


def weighted_validation(val_ds, class_weight: dict[int, float] | None):
    """``val_ds`` with the training's class weights as sample weights, so that the validation
    loss that early stopping and checkpointing watch is the same objective training minimises."""
    if not class_weight:
        return val_ds
    return val_ds.map(lambda images, labels: (images, labels, example_weights(labels, class_weight)))
