"""Train the brain model (SliceStandardisation inside it, augmentation, both phases with their
callbacks) on synthetic slices, export it and read it back: what tests/test_dependencies.py runs
under the oldest Keras that pyproject.toml allows."""

import tempfile
from pathlib import Path

import keras

from medclass import augment, data, models, pipeline, saved_models, splits, training

print("keras", keras.__version__)
folder = Path(tempfile.mkdtemp())
frame = splits.split_frame(data.load_dataset("brain_mri", folder, synthetic_data=True), seed=0)
names = ["Healthy", "Tumor"]
train = pipeline.make_dataset(
    frame[frame.split == "train"],
    names,
    (64, 64),
    16,
    training=True,
    augment=augment.make_augmentation("mild", 0, num_classes=2),
    seed=0,
)
val = pipeline.make_dataset(frame[frame.split == "val"], names, (64, 64), 16)
model, base = models.build_classifier("mobilenet_v2", None, (64, 64), 2, alpha=0.35, standardise=True)
recipe = training.Recipe(epochs_frozen=1, epochs_finetune=1, unfreeze_blocks=2)
training.train_two_phase(model, base, train, val, folder / "run", 2, recipe, metadata={"class_names": names})
loaded, info = saved_models.load_model(folder / "run")
print("trained, exported and read back with keras", keras.__version__)
