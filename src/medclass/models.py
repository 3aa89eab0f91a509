"""Model factory: a pretrained backbone with its preprocessing inside and a small head.

Defined in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
from keras import layers, ops

# Each backbone: its constructor and the input normalisation its ImageNet weights expect.
BACKBONES = {
    "resnet50": (keras.applications.ResNet50, "caffe"),
    "mobilenet_v2": (keras.applications.MobileNetV2, "tf"),
}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="medclass")
class BackbonePreprocessing(layers.Layer):
    """The backbone's own input normalisation, as a layer saved with the model.

    ``mode="caffe"`` (ResNet50): RGB to BGR, then subtract the ImageNet channel means.
    ``mode="tf"`` (MobileNetV2): scale 0-255 pixels to [-1, 1].
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in {"caffe", "tf"}:
            raise ValueError(f"Unknown preprocessing mode {mode!r}; use 'caffe' or 'tf'.")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            return ops.flip(images, axis=-1) - ops.convert_to_tensor(CAFFE_BGR_MEAN, self.compute_dtype)
        return images / 127.5 - 1.0

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def make_backbone(
    backbone: str, weights: str | None, image_size: Sequence[int], alpha: float = 1.0
) -> keras.Model:
    """Build a headless backbone with ``weights``: "imagenet", None, or a weights file path."""
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}.")
    constructor, _ = BACKBONES[backbone]
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise FileNotFoundError(
            f"Weights file {weights} does not exist. Pass weights='imagenet' (needs network), "
            "None (random initialisation), or the path of a .weights.h5 file."
        )
    kwargs = {"include_top": False, "weights": weights, "input_shape": (*image_size, 3)}
    if backbone == "mobilenet_v2":
        kwargs["alpha"] = alpha
    try:
        return constructor(**kwargs)
    except Exception as error:  # Keras reports a failed download as a bare Exception.
        if weights == "imagenet" and "URL fetch failure" in str(error):
            raise RuntimeError(
                f"Could not download the ImageNet weights of {backbone}: {error}. This machine "
                "has no network access to Keras's weight store. Run where it has, copy the file "
                "into ~/.keras/models/, or pass weights=None or weights='/path/to/file.weights.h5'."
            ) from error
        raise


def build_classifier(
    backbone: str,
    weights: str | None,
    image_size: Sequence[int],
    num_classes: int,
    dropout: float = 0.3,
    alpha: float = 1.0,
) -> tuple[keras.Model, keras.Model]:
    """Return ``(model, backbone)``: raw 0-255 RGB images in, class probabilities out.

    The model resizes any input to ``image_size`` and applies the backbone's own
    preprocessing, so training, evaluation and the app all feed it plain pixels. The
    backbone runs in inference mode (``training=False``), which keeps BatchNormalization
    statistics frozen when its layers are later unfrozen for fine-tuning.
    """
    image_size = tuple(int(side) for side in image_size)
    base = make_backbone(backbone, weights, image_size, alpha)
    base.trainable = False
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = layers.Resizing(*image_size, antialias=True, name="resize")(inputs)
    x = BackbonePreprocessing(BACKBONES[backbone][1], name="preprocess")(x)
    x = base(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    if num_classes == 2:
        outputs = layers.Dense(1, activation="sigmoid", name="probability")(x)
    else:
        outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_classifier"), base


def unfreeze_top(backbone: keras.Model, n_layers: int) -> int:
    """Make the top ``n_layers`` of ``backbone`` trainable, BatchNormalization excepted.

    Returns the number of layers left trainable.
    """
    if n_layers < 0:
        raise ValueError(f"unfreeze_layers={n_layers} must be 0 or more.")
    backbone.trainable = True
    cut = len(backbone.layers) - n_layers
    for index, layer in enumerate(backbone.layers):
        is_batch_norm = isinstance(layer, layers.BatchNormalization)
        layer.trainable = index >= cut and not is_batch_norm
    return sum(layer.trainable for layer in backbone.layers)
