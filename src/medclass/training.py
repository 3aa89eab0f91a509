"""Two-phase transfer learning: train the head on a frozen backbone, then fine-tune its top.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb); progressive
unfreezing, the focal loss and MLflow tracking in "Skin lesions: training".

The pieces a chapter calls one by one: :class:`Recipe` (the knobs, and its
:meth:`~Recipe.phases`), :func:`set_trainable` (freeze, or unfreeze the top blocks),
:func:`compile_for`, and :class:`Run`, which fits the phases in turn and exports the model.
:func:`train_two_phase` is that loop as one call.

A run survives interruption: each phase's epochs are backed up (``BackupAndRestore``) in
``<run_dir>/work``, finished phases are recorded there, and a new :class:`Run` with the same
model, data and recipe skips the phases done and resumes the one that stopped. Only a finished
run replaces ``model.keras``, ``history.csv`` and ``model.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from medclass import files, records
from medclass.models import unfreeze_top_blocks

ARTIFACTS = ("model.keras", "history.csv", "model.json")
SCHEDULES = ("plateau", "cosine")
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
        from keras import ops

        log_prior = ops.log(ops.convert_to_tensor(self.prior, "float32"))
        logits = ops.log(ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0)) + log_prior
        return keras.losses.categorical_crossentropy(y_true, logits, from_logits=True)

    def get_config(self):
        return {**super().get_config(), "prior": self.prior}


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


@dataclass
class TrainingResult:
    """What a training run leaves behind, and where."""

    model: keras.Model
    history: pd.DataFrame
    model_path: Path
    history_path: Path
    mlflow_run_id: str | None = None
    resumed_phases: list[str] = field(default_factory=list)


def strategy_scope(model: keras.Model):
    """The ``tf.distribute`` scope ``model`` was built in (a no-op on other backends)."""
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def compile_for(model: keras.Model, num_classes: int, learning_rate: float, recipe: Recipe) -> None:
    """AdamW, cross-entropy or focal loss for a sigmoid or softmax output, accuracy (+ AUC).

    The optimizer is made in the model's distribution scope, as ``tf.distribute`` requires.
    """
    with strategy_scope(model):
        _compile(model, num_classes, learning_rate, recipe)


def _compile(model: keras.Model, num_classes: int, learning_rate: float, recipe: Recipe) -> None:
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=recipe.weight_decay)
    if num_classes == 2 and recipe.loss == "logit_adjusted":
        raise ValueError("loss='logit_adjusted' is for a softmax over 3 or more classes; use class weights.")
    if num_classes == 2:
        loss = keras.losses.BinaryFocalCrossentropy() if recipe.loss == "focal" else "binary_crossentropy"
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    else:
        losses = {
            "focal": keras.losses.CategoricalFocalCrossentropy,
            "logit_adjusted": lambda: LogitAdjustedCrossentropy(recipe.class_prior),
        }
        loss = losses.get(recipe.loss, lambda: "categorical_crossentropy")()
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=recipe.jit_compile)


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


class WarmupCosine(keras.callbacks.Callback):
    """The learning rate of a phase that starts at epoch ``first_epoch`` and lasts ``epochs``:
    a linear warm-up from ``peak / 20`` over its first epoch (fresh optimizer moments on newly
    unfrozen weights make large first steps), then a cosine decay towards 0 over the rest. Set
    before every batch from the epoch's number, so a resumed phase carries on where it was."""

    def __init__(self, peak: float, first_epoch: int, epochs: int):
        super().__init__()
        self.peak, self.first_epoch, self.epochs = float(peak), int(first_epoch), int(epochs)
        self._epoch = 0

    def rate(self, progress: float) -> float:
        """The rate ``progress`` epochs into the phase."""
        if progress < 1:
            return self.peak / 20 + (self.peak - self.peak / 20) * progress
        decay = (progress - 1) / max(self.epochs - 1, 1)
        return 0.5 * self.peak * (1 + math.cos(math.pi * min(decay, 1.0)))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch - self.first_epoch

    def on_train_batch_begin(self, batch, logs=None):
        steps = self.params.get("steps") or 0
        progress = self._epoch + (batch / steps if steps else 0.0)
        self.model.optimizer.learning_rate.assign(self.rate(progress))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def _callbacks(model_checkpoint, patience: int, schedule: keras.callbacks.Callback | None = None) -> list:
    # The learning rate drops after half the patience, so that a phase gets a chance at the
    # lower rate before early stopping ends it; a phase with its own ``schedule`` keeps to it.
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.3, patience=max(1, patience // 2), min_lr=1e-6
    )
    return [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        schedule or plateau,
        model_checkpoint,
    ]


def example_weights(labels, class_weight: dict[int, float]):
    """Per-example weights for 0/1 labels or one-hot rows (mixed rows weigh proportionally);
    ``labels`` may be a NumPy array or a tensor inside ``tf.data``."""
    from keras import ops

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


class AtomicCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` whose file appears whole or not at all.

    Keras writes the checkpoint in place, so a kill or a full disk during the write would leave
    a truncated best checkpoint that blocks every resume; this one writes beside it and renames
    the finished file over it (one step on every file system the book runs on).
    """

    def __init__(self, filepath: str | Path, **kwargs):
        self.target = Path(filepath)
        super().__init__(self.target.with_name("partial-" + self.target.name), **kwargs)

    def on_train_begin(self, logs=None):
        Path(self.filepath).unlink(missing_ok=True)  # left by a write that was cut short
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if Path(self.filepath).exists():  # written this epoch
            Path(self.filepath).replace(self.target)


def save_weights_atomically(model: keras.Model, path: Path) -> None:
    """``model.save_weights(path)``, written beside ``path`` and renamed over it when whole."""
    partial = path.with_name("partial-" + path.name)
    model.save_weights(partial)
    partial.replace(path)


def _readable_weights(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r"):
            return True
    except OSError:
        return False


def _load_weights(model: keras.Model, weights_path: Path) -> None:
    """Load a checkpoint; its optimizer state is not needed, so Keras's note about it is muted."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(weights_path)


def extract_features(model: keras.Model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """The pooled backbone features of every image of ``dataset``, and the labels, in order."""
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)
    features, labels = [], []
    for images, batch_labels in dataset:
        features.append(np.asarray(pooled(images, training=False), dtype="float32"))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(features), np.concatenate(labels)


def _head_of(model: keras.Model) -> keras.Model:
    """The dropout and output layers of ``model`` as a model on pooled features (shared weights)."""
    features = keras.Input(shape=model.get_layer("pool").output.shape[1:], name="features")
    outputs = model.layers[-1](model.get_layer("dropout")(features))
    return keras.Model(features, outputs, name="head")


def _cached_features(model, work_dir: Path, plain_train_ds, val_ds) -> dict[str, np.ndarray]:
    path = work_dir / "features.npz"
    if not path.exists():
        if plain_train_ds is None:
            raise ValueError(
                "cache_features=True needs plain_train_ds: the training split without shuffling "
                "or augmentation, from which the frozen backbone's features are computed once."
            )
        x_train, y_train = extract_features(model, plain_train_ds)
        x_val, y_val = extract_features(model, val_ds)
        np.savez(path.with_suffix(".partial.npz"), x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
        path.with_suffix(".partial.npz").replace(path)
    with np.load(path) as arrays:
        return dict(arrays)


def _fingerprint(model: keras.Model, num_classes: int, recipe: Recipe, metadata: dict) -> str:
    """What must match for an interrupted run to be resumed rather than restarted."""
    described = {"recipe": asdict(recipe), "metadata": metadata, "classes": num_classes}
    described["model"] = [model.name, model.count_params()]
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def _read_history(path: Path, phase: str) -> pd.DataFrame:
    frame = pd.read_csv(path).drop_duplicates("epoch", keep="last")
    frame["epoch"] = frame["epoch"] + 1
    frame.insert(1, "phase", phase)
    return frame


def set_trainable(backbone: keras.Model, phase: Phase) -> None:
    """Freeze ``backbone`` for the frozen phase; unfreeze its top ``phase.unfreeze_blocks``
    blocks (their BatchNormalization layers stay frozen) for a fine-tuning phase."""
    if phase.unfreeze_blocks == 0:
        backbone.trainable = False
    else:
        unfreeze_top_blocks(backbone, phase.unfreeze_blocks)


_RUNS_HOLDING: dict[Path, Run] = {}  # run folder -> the Run of this process that holds its lock


class Run:
    """A resumable training run in ``run_dir``: fit its phases one by one, then :meth:`finish`.

    The lock on ``run_dir`` is taken here, so a second process training into the same folder
    is refused at once (:class:`medclass.runtime.FolderBusy`); a new ``Run`` of the same folder
    in this process (a notebook cell run again) takes it over. What a phase needs to resume is
    kept in ``run_dir / "work"``: the epoch backups, the phases done, the best checkpoint. A
    ``Run`` made again with the same model, data and recipe skips the phases done and resumes
    the one that was interrupted. Only :meth:`finish` writes ``model.keras``, ``history.csv``
    and ``model.json``. With ``tracking_dir`` (usually ``output_dir``) parameters, per-epoch
    metrics and the final model go to MLflow (see :mod:`medclass.tracking`); ``callbacks`` are
    added to every ``fit``.
    """

    def __init__(
        self,
        model: keras.Model,
        backbone: keras.Model,
        run_dir: str | Path,
        num_classes: int,
        recipe: Recipe,
        *,
        class_weight: dict[int, float] | None = None,
        metadata: dict | None = None,
        plain_train_ds=None,
        tracking_dir: str | Path | None = None,
        callbacks: list | None = None,
        batch_size: int = 32,
        verbose: int = 2,
    ):
        from medclass.models import backbone_blocks

        wanted = max(phase.unfreeze_blocks for phase in recipe.phases())
        available = len(backbone_blocks(backbone)) - 1 if wanted else 0  # the stem is not a block
        if wanted > available:  # found before phase 1 trains, not after
            raise ValueError(
                f"unfreeze_blocks={recipe.unfreeze_blocks}: {backbone.name} has {available} blocks; "
                f"use 0 to {available}."
            )
        self.metadata = dict(metadata or {})
        if "class_names" in self.metadata:  # the model.json this run will write must be readable
            records.check_model_info(self.metadata, "metadata")
        self.model, self.backbone, self.num_classes, self.recipe = model, backbone, num_classes, recipe
        self.class_weight, self.plain_train_ds, self.batch_size = class_weight, plain_train_ds, batch_size
        self.verbose = verbose  # Keras's: 2 logs a line per epoch, 0 nothing (the seed study's runs)
        self.callbacks = list(callbacks or [])
        self.run_dir, self.work_dir = Path(run_dir), Path(run_dir) / "work"
        self.histories: list[pd.DataFrame] = []
        self.failed: BaseException | None = None
        self.finished = False
        self._lock = contextlib.ExitStack()
        self._hold_the_folder()
        try:
            self._start(tracking_dir)
        except BaseException:
            self._let_go()
            raise

    def _hold_the_folder(self) -> None:
        from medclass.runtime import folder_lock

        key = self.run_dir.resolve()
        if key in _RUNS_HOLDING:  # the cell run again: the earlier Run of this folder stops here
            earlier = _RUNS_HOLDING[key]
            earlier._fail(
                RuntimeError(f"a new training.Run of {self.run_dir} took its folder over"), "KILLED"
            )
        self._lock.enter_context(
            folder_lock(self.run_dir / ".training.lock", wait=False, what=f"The run folder {self.run_dir}")
        )
        _RUNS_HOLDING[key] = self

    def _let_go(self) -> None:
        self._lock.close()
        if _RUNS_HOLDING.get(self.run_dir.resolve()) is self:
            del _RUNS_HOLDING[self.run_dir.resolve()]

    def _start(self, tracking_dir) -> None:
        from medclass.tracking import Tracker

        self.state_path = self.work_dir / "state.json"
        fingerprint = _fingerprint(self.model, self.num_classes, self.recipe, self.metadata)
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        best = self.work_dir / "best.weights.h5"
        if state.get("fingerprint") == fingerprint and best.exists() and not _readable_weights(best):
            print(  # written by a medclass before AtomicCheckpoint, or damaged on disk
                f"{best} is cut short or damaged; the phases it held cannot be resumed, so the run "
                "starts again from its first phase."
            )
            state = {}
        if state.get("fingerprint") != fingerprint:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir.mkdir(parents=True)
            state = {"fingerprint": fingerprint, "done": [], "best_val_loss": None, "mlflow_run_id": None}
        self.state, self.resumed = state, list(state["done"])
        self.tracker = None
        if tracking_dir is not None:
            self.tracker = Tracker(
                tracking_dir,
                run_name=f"{self.run_dir.name}-{self.metadata.get('backbone', self.model.name)}",
                run_id=state["mlflow_run_id"],
            )
            if state["mlflow_run_id"] is not None:
                self.tracker.client.update_run(self.tracker.run_id, status="RUNNING")  # resumed
            else:
                self.tracker.log_params(
                    {**asdict(self.recipe), **self.metadata, "num_classes": self.num_classes}
                )
                self.tracker.set_tags({"dataset": self.run_dir.name, "data": self.metadata.get("data", "")})
            state["mlflow_run_id"] = self.tracker.run_id
        _save_state(self.state_path, state)
        self.best_weights = self.work_dir / "best.weights.h5"
        if self.resumed and self.best_weights.exists():
            _load_weights(self.model, self.best_weights)

    @property
    def epoch(self) -> int:
        """Epochs trained so far, over all phases."""
        return int(self.histories[-1]["epoch"].max()) if self.histories else 0

    def fit(self, phase: Phase, train_ds, val_ds) -> pd.DataFrame:
        """Train ``phase`` (the next of ``recipe.phases()``), or read it back if an earlier run
        finished it. The model is compiled at the phase's learning rate, as Keras needs after
        trainable flags change; the best validation epoch so far is kept. Returns its history."""
        self._check_going()
        phases = self.recipe.phases()
        if len(self.histories) >= len(phases) or phase != phases[len(self.histories)]:
            expected = phases[len(self.histories)].name if len(self.histories) < len(phases) else "none"
            raise ValueError(f"Phase {phase.name!r} is out of turn: the recipe's next phase is {expected}.")
        index, log_path = len(self.histories), self.work_dir / f"history-{len(self.histories)}.csv"
        if phase.name in self.state["done"]:
            self.histories.append(_read_history(log_path, phase.name))
            print(f"phase {phase.name}: finished by an earlier run, read back")
            return self.histories[-1]
        _check_trainable(self.backbone, phase)
        extra = [keras.callbacks.CSVLogger(log_path, append=True), *self.callbacks]
        if self.tracker is not None:
            extra.append(self.tracker.callback())
        try:
            if phase.name == "frozen" and self.recipe.cache_features:
                self._fit_cached(phase, val_ds, extra)
            else:
                self._fit(phase, index, train_ds, val_ds, extra)
            if self.best_weights.exists():
                _load_weights(self.model, self.best_weights)
            history = _read_history(log_path, phase.name)
            _check_converged(history, self.recipe)
        except BaseException as error:
            self._fail(error)
            raise
        self.histories.append(history)
        self.state["done"].append(phase.name)
        self.state["best_val_loss"] = float(pd.concat(self.histories)["val_loss"].min())
        _save_state(self.state_path, self.state)
        return history

    def _fit(self, phase: Phase, index: int, train_ds, val_ds, extra: list) -> None:
        compile_for(self.model, self.num_classes, phase.learning_rate, self.recipe)
        checkpoint = AtomicCheckpoint(
            self.best_weights,
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=self.state["best_val_loss"],
        )
        backup = self.work_dir / f"backup-{index}"
        _usable_backup(backup)
        schedule = None
        if phase.unfreeze_blocks and self.recipe.finetune_schedule == "cosine":
            schedule = WarmupCosine(phase.learning_rate, self.epoch, phase.epochs)
        self.model.fit(
            train_ds,
            validation_data=weighted_validation(val_ds, self.class_weight),
            initial_epoch=self.epoch,
            epochs=self.epoch + phase.epochs,
            shuffle=False,  # tf.data shuffles
            callbacks=[
                *_callbacks(checkpoint, self.recipe.patience, schedule),
                # Two alternating backups: a kill while one is written leaves the other.
                keras.callbacks.BackupAndRestore(backup, double_checkpoint=True),
                *extra,
            ],
            class_weight=self.class_weight,
            verbose=self.verbose,
        )

    def _fit_cached(self, phase: Phase, val_ds, extra: list) -> None:
        features = _cached_features(self.model, self.work_dir, self.plain_train_ds, val_ds)
        head = _fit_head_on_features(
            self.model,
            self.num_classes,
            self.recipe,
            phase,
            features,
            self.work_dir,
            fit_options={
                "class_weight": self.class_weight,
                "callbacks": extra,
                "batch_size": self.batch_size,
                "verbose": self.verbose,
            },
        )
        _load_weights(head, self.work_dir / "head.weights.h5")
        save_weights_atomically(self.model, self.best_weights)

    def _check_going(self) -> None:
        if self.finished:
            raise RuntimeError(
                f"This run has finished: its model is in {self.run_dir}. Make a new training.Run to "
                "train again."
            )
        if self.failed is not None:
            raise RuntimeError(
                f"This run stopped ({type(self.failed).__name__}: {self.failed}); make a new "
                "training.Run (run the cell again) to resume it where it stopped."
            )

    def _fail(self, error: BaseException, status: str | None = None) -> None:
        self.failed = error
        if self.tracker is not None:
            self.tracker.end(status or ("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"))
        self._let_go()

    def finish(self) -> TrainingResult:
        """Export the best weights' model, the history and ``model.json`` into ``run_dir`` (only
        now, so a run that failed earlier never replaced a good model), and let the folder go."""
        self._check_going()
        if len(self.histories) < len(self.recipe.phases()):
            raise ValueError(
                f"{len(self.histories)} of the recipe's {len(self.recipe.phases())} phases are fitted; "
                "fit the others before finish()."
            )
        run_dir, work_dir, tracker = self.run_dir, self.work_dir, self.tracker
        history = pd.concat(self.histories, ignore_index=True).rename(columns={"learning_rate": "lr"})
        metadata = {**self.metadata, "mlflow_run_id": tracker.run_id if tracker else None}
        try:
            self.model.save(work_dir / "model.keras")
            history.to_csv(work_dir / "history.csv", index=False)
            # The digest pairs the sidecar with its model: a kill between the renames below
            # leaves a pair that load_model refuses, never a new model named by an old sidecar.
            metadata["model_sha256"] = records.model_digest(work_dir / "model.keras")
            records.write_json(work_dir / "model.json", metadata)
            for name in ARTIFACTS:
                (work_dir / name).replace(run_dir / name)
        except OSError as error:
            self._fail(error)
            raise files.said_full(error, run_dir / "model.keras") from error
        except BaseException as error:
            self._fail(error)
            raise
        self.finished = True  # the model is exported; what follows only records it
        try:
            if tracker is not None:
                best = history.loc[history["val_loss"].idxmin()]
                tracker.log_metrics(
                    {f"best_{key}": best[key] for key in history.columns if key.startswith("val_")}
                )
                for name in ARTIFACTS:
                    tracker.log_artifact(run_dir / name, "model")
                tracker.end("FINISHED")
            shutil.rmtree(work_dir)
        except BaseException:
            if tracker is not None:
                tracker.end("FAILED")
            raise
        finally:
            self._let_go()
        return TrainingResult(
            self.model,
            history,
            run_dir / "model.keras",
            run_dir / "history.csv",
            metadata["mlflow_run_id"],
            self.resumed,
        )


def _check_trainable(backbone: keras.Model, phase: Phase) -> None:
    """The frozen phase trains the head alone; a fine-tuning phase trains backbone blocks too.
    It catches a backbone left wholly open or wholly frozen; it does not count the blocks."""
    trainable = len(backbone.trainable_weights)
    if phase.unfreeze_blocks == 0 and trainable:
        raise ValueError(
            f"Phase {phase.name!r} trains the head alone, but {backbone.name} has {trainable} trainable "
            "weights: set backbone.trainable = False (training.set_trainable) before fitting it."
        )
    if phase.unfreeze_blocks and not trainable:
        raise ValueError(
            f"Phase {phase.name!r} fine-tunes {phase.unfreeze_blocks} blocks, but {backbone.name} is "
            "frozen: unfreeze them (training.set_trainable) before fitting it."
        )


def train_two_phase(
    model: keras.Model,
    backbone: keras.Model,
    train_ds,
    val_ds,
    run_dir: str | Path,
    num_classes: int,
    recipe: Recipe,
    **run_options,
) -> TrainingResult:
    """Every phase of ``recipe`` in a resumable :class:`Run` (``run_options`` are its keyword
    options: ``class_weight``, ``metadata``, ``plain_train_ds``, ``tracking_dir``, ``callbacks``,
    ``batch_size``, ``verbose``): the backbone frozen while the head learns, then its top blocks fine-tuned
    at a lower learning rate (the training chapters write this loop out). Every phase stops
    early and reduces the learning rate on validation loss (weighted by ``class_weight`` like
    the training loss); one checkpoint across all phases keeps the weights of the best
    validation epoch of the whole run."""
    run = Run(model, backbone, run_dir, num_classes, recipe, **run_options)
    for phase in recipe.phases():
        set_trainable(backbone, phase)
        run.fit(phase, train_ds, val_ds)
    return run.finish()


def _fit_head_on_features(model, num_classes, recipe, phase, features, work_dir, fit_options) -> keras.Model:
    """Phase 1 on cached features: the backbone runs once per image instead of once per epoch.

    Trains the head (which shares its layers with ``model``) and returns it; the best epoch's
    head weights are in ``work_dir / "head.weights.h5"``.
    """
    with strategy_scope(model):
        head = _head_of(model)
    compile_for(head, num_classes, phase.learning_rate, recipe)
    checkpoint = AtomicCheckpoint(
        work_dir / "head.weights.h5", monitor="val_loss", save_best_only=True, save_weights_only=True
    )
    class_weight = fit_options["class_weight"]
    val_weights = np.asarray(example_weights(features["y_val"], class_weight)) if class_weight else None
    head.fit(
        features["x_train"],
        features["y_train"],
        validation_data=(features["x_val"], features["y_val"], val_weights),
        epochs=phase.epochs,
        batch_size=fit_options["batch_size"],
        callbacks=[*_callbacks(checkpoint, recipe.patience), *fit_options["callbacks"]],
        class_weight=class_weight,
        verbose=fit_options.get("verbose", 2),
    )
    return head


def _readable(weights: Path, metadata: Path) -> bool:
    import h5py

    try:
        with h5py.File(weights, "r"):
            pass
        json.loads(metadata.read_text())
    except (OSError, ValueError):
        return False
    return True


def _usable_backup(backup: Path) -> None:
    """Make an epoch backup that a kill cut short harmless before ``BackupAndRestore`` reads it:
    fall back to the previous backup (``double_checkpoint``) or, without one, start the phase
    again from the best checkpoint, saying so."""
    latest = (backup / "latest.weights.h5", backup / "training_metadata.json")
    previous = tuple(path.with_name(path.name + ".bkp") for path in latest)
    if not latest[0].exists() or _readable(*latest):
        return
    if previous[0].exists() and _readable(*previous):
        for source, target in zip(previous, latest, strict=True):
            shutil.copyfile(source, target)
        print(f"{backup.name}: the last epoch's backup was cut short; resuming from the one before.")
        return
    shutil.rmtree(backup)
    print(f"{backup.name}: the epoch backup was cut short and has no predecessor; the phase starts again.")


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; nothing was exported."""


def _check_converged(history: pd.DataFrame, recipe: Recipe) -> None:
    """Raise before anything is exported if a loss of ``history`` is not a finite number."""
    losses = history[[column for column in ("loss", "val_loss") if column in history]]
    broken = ~np.isfinite(losses.to_numpy(dtype="float64")).all(axis=1)
    if broken.any():
        row = history[broken].iloc[0]
        raise TrainingDiverged(
            f"Training diverged: the loss is {row.get('loss')} (validation {row.get('val_loss')}) at "
            f"epoch {int(row['epoch'])} of phase {row['phase']!r}. Nothing was exported; the model "
            f"already in the run folder is untouched. Lower the learning rate (learning_rate="
            f"{recipe.learning_rate}) and run the training again."
        )


def _save_state(path: Path, state: dict) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(path)
