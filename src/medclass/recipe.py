"""The knobs of a two-phase run (:class:`Recipe`), its phases, and what a phase sets on the
model: which backbone blocks train (:func:`set_trainable`) and what it is compiled with
(:meth:`Recipe.loss_and_metrics`; :func:`medclass.fitting.fit_phase` compiles).

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb); progressive
unfreezing in "Skin lesions: training".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import keras

from medclass.losses import LOSSES, LogitAdjustedCrossentropy
from medclass.models import unfreeze_top_blocks

SCHEDULES = ("plateau", "cosine")


@dataclass
class Recipe:
    """The knobs of a training run. Phase 2 runs at ``learning_rate * finetune_lr_factor``.

    ``unfreeze_blocks`` is the number of top backbone blocks trained in phase 2, or a list for
    progressive unfreezing: ``[2, 5, 9]`` splits the fine-tuning epochs into three stages that
    unfreeze 2, then 5, then 9 blocks. ``loss`` is "crossentropy" or "focal" (focal
    cross-entropy, which down-weights easy examples). ``cache_features`` trains phase 1 on the
    frozen backbone's features computed once, instead of running the backbone every epoch.
    ``loss="logit_adjusted"`` (:class:`LogitAdjustedCrossentropy`) needs ``class_prior``.
    ``finetune_schedule`` is "plateau" (each fine-tuning phase at a constant rate, cut when the
    validation loss stalls) or "cosine" (:class:`WarmupCosine`: one epoch of warm-up, then a
    cosine decay over the phase).
    """

    epochs_frozen: int = 10
    epochs_finetune: int = 10
    learning_rate: float = 1e-3
    finetune_lr_factor: float = 0.1
    unfreeze_blocks: int | list[int] = 2
    weight_decay: float = 1e-4
    patience: int = 4
    loss: str = "crossentropy"
    cache_features: bool = False
    jit_compile: bool = False
    finetune_schedule: str = "plateau"
    class_prior: list[float] | None = None

    def __post_init__(self):
        for name in ("epochs_frozen", "epochs_finetune", "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be 0 or more.")
        if self.epochs_frozen + self.epochs_finetune == 0:
            raise ValueError("epochs_frozen and epochs_finetune are both 0: nothing to train.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}; use one of {list(LOSSES)}.")
        if (self.loss == "logit_adjusted") != (self.class_prior is not None):
            raise ValueError(
                "loss='logit_adjusted' needs class_prior, each class's share of the training images "
                "(training.class_prior), and class_prior is used by no other loss."
            )
        if self.finetune_schedule not in SCHEDULES:
            raise ValueError(f"finetune_schedule={self.finetune_schedule!r}; use one of {list(SCHEDULES)}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate} must be positive.")
        stages = self.stages()
        if self.epochs_finetune and self.epochs_finetune < len(stages):
            raise ValueError(
                f"epochs_finetune={self.epochs_finetune} is fewer than the {len(stages)} unfreezing "
                f"stages of unfreeze_blocks={self.unfreeze_blocks}; give each stage an epoch."
            )
        if any(later < earlier for earlier, later in zip(stages, stages[1:], strict=False)):
            raise ValueError(f"unfreeze_blocks={self.unfreeze_blocks} must not decrease from stage to stage.")

    def loss_and_metrics(self, num_classes: int) -> tuple:
        """What ``compile`` takes for this recipe: binary cross-entropy (or focal) with accuracy
        and ROC-AUC for a sigmoid output; categorical cross-entropy, focal or logit-adjusted
        with accuracy for a softmax over ``num_classes``."""
        if num_classes == 2 and self.loss == "logit_adjusted":
            raise ValueError("loss='logit_adjusted' is for 3 classes or more; for 2 use class weights.")
        if num_classes == 2:
            loss = keras.losses.BinaryFocalCrossentropy() if self.loss == "focal" else "binary_crossentropy"
            return loss, [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
        losses = {
            "focal": keras.losses.CategoricalFocalCrossentropy,
            "logit_adjusted": lambda: LogitAdjustedCrossentropy(self.class_prior),
        }
        loss = losses.get(self.loss, lambda: "categorical_crossentropy")()
        return loss, [keras.metrics.CategoricalAccuracy(name="accuracy")]

    def stages(self) -> list[int]:
        blocks = self.unfreeze_blocks
        return [int(n) for n in blocks] if isinstance(blocks, list | tuple) else [int(blocks)]

    def phases(self) -> list[Phase]:
        """The frozen phase, then one fine-tuning phase per unfreezing stage."""
        phases = [Phase("frozen", self.epochs_frozen, self.learning_rate, 0)] if self.epochs_frozen else []
        if self.epochs_finetune:
            stages = self.stages()
            share, extra = divmod(self.epochs_finetune, len(stages))
            for index, blocks in enumerate(stages):
                name = "fine-tune" if len(stages) == 1 else f"fine-tune {index + 1}"
                epochs = share + (index >= len(stages) - extra)
                phases.append(Phase(name, epochs, self.learning_rate * self.finetune_lr_factor, blocks))
        return phases


@dataclass
class Phase:
    name: str
    epochs: int
    learning_rate: float
    unfreeze_blocks: int


def strategy_scope(model: keras.Model):
    """The ``tf.distribute`` scope ``model`` was built in (a no-op on other backends)."""
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def set_trainable(backbone: keras.Model, phase: Phase) -> None:
    """Freeze ``backbone`` for the frozen phase; unfreeze its top ``phase.unfreeze_blocks``
    blocks (their BatchNormalization layers stay frozen) for a fine-tuning phase."""
    if phase.unfreeze_blocks == 0:
        backbone.trainable = False
    else:
        unfreeze_top_blocks(backbone, phase.unfreeze_blocks)
