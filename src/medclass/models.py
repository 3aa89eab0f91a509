"""Model factory: a pretrained backbone with its preprocessing inside and a small head.

First used in chapter "Convolutional networks" (notebooks/concepts_01_cnn.ipynb); explained
in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb), the EfficientNets and
progressive unfreezing in "Skin lesions: training" (skin_02_training). Keras APIs only
(``keras.ops``), so the same models run on the TensorFlow and JAX backends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers, ops


@dataclass(frozen=True)
class Backbone:
    """A ``keras.applications`` constructor, the input normalisation its ImageNet weights
    expect ("caffe", "tf", or "none" where the model normalises inside), and its input size."""

    constructor: object
    preprocessing: str
    image_size: int


BACKBONES = {
    "resnet50": Backbone(keras.applications.ResNet50, "caffe", 224),
    "mobilenet_v2": Backbone(keras.applications.MobileNetV2, "tf", 224),
    "efficientnet_b0": Backbone(keras.applications.EfficientNetB0, "none", 224),
    "efficientnet_b1": Backbone(keras.applications.EfficientNetB1, "none", 240),
    "efficientnet_b2": Backbone(keras.applications.EfficientNetB2, "none", 260),
    "efficientnet_b3": Backbone(keras.applications.EfficientNetB3, "none", 300),
    "efficientnet_b4": Backbone(keras.applications.EfficientNetB4, "none", 380),
}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# The layer-name patterns that say which block a backbone layer belongs to.
BLOCK_NAME = re.compile(r"^(conv\d_block\d+|block\d+[a-z]|block_\d+|expanded_conv)_")


def backbone_spec(backbone: str) -> Backbone:
    """The registry entry of ``backbone``, or an error listing the known names."""
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}.")
    return BACKBONES[backbone]


def image_size_for(backbone: str, image_size: int | Sequence[int] | None = None) -> tuple[int, int]:
    """``image_size`` as (height, width); None gives the size the backbone was trained at."""
    if image_size is None:
        image_size = backbone_spec(backbone).image_size
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    height, width = (int(side) for side in image_size)
    if min(height, width) < 32:
        raise ValueError(f"image_size={image_size} is too small; use at least 32 pixels a side.")
    return height, width


@keras.saving.register_keras_serializable(package="medclass")
class BackbonePreprocessing(layers.Layer):
    """The backbone's own input normalisation, as a layer saved with the model.

    ``mode="caffe"`` (ResNet50): RGB to BGR, then subtract the ImageNet channel means.
    ``mode="tf"`` (MobileNetV2): scale 0-255 pixels to [-1, 1].
    ``mode="none"`` (EfficientNet, which rescales and normalises inside): pass 0-255 through.
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in {"caffe", "tf", "none"}:
            raise ValueError(f"Unknown preprocessing mode {mode!r}; use 'caffe', 'tf' or 'none'.")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            return ops.flip(images, axis=-1) - ops.convert_to_tensor(CAFFE_BGR_MEAN, self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        return images

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def image_quantiles(images, quantiles):
    """Each image's quantiles of ``images`` (batch, height, width), one (batch,) tensor per
    quantile, interpolated linearly as ``numpy.quantile`` does. ``keras.ops.quantile`` gives the
    same numbers but fails inside ``fit`` on Keras 3.10 and 3.11; sorting works on every Keras 3."""
    flat = ops.reshape(images, (ops.shape(images)[0], -1))
    ordered = ops.sort(flat, axis=-1)
    last = ops.cast(ops.shape(flat)[1] - 1, "float32")
    levels = []
    for quantile in quantiles:
        position = quantile * last
        below = ops.floor(position)
        low = ops.take(ordered, ops.cast(below, "int32"), axis=1)
        high = ops.take(ordered, ops.cast(ops.ceil(position), "int32"), axis=1)
        levels.append(low + (high - low) * (position - below))
    return levels


@keras.saving.register_keras_serializable(package="medclass")
class SliceStandardisation(layers.Layer):
    """Remove what says where a scan came from rather than what it shows, inside the model.

    Three steps, each on by default, on 0-255 RGB batches of a fixed size:

    - ``greyscale``: the mean of the three channels, repeated three times, so a greyscale (L)
      file and the same slice saved as RGB or with a colour cast look the same;
    - ``crop``: the smallest square around the rows and columns of which more than
      ``occupancy`` of the pixels are brighter than ``foreground`` times the image's 99th
      percentile (the head), with a ``margin``, scaled back to the full size, so the border
      and the framing of the source go;
    - ``normalise``: intensities stretched so the 1st and 99.5th percentiles of the crop land on
      0 and 255, so brightness and contrast settings go.

    Defined in chapter "Brain MRI: the data" (the shortcut audit), used from "Brain MRI:
    training". Keras ops only: it saves with the model, so training, evaluation, the report and
    the app cannot differ.
    """

    def __init__(
        self,
        greyscale: bool = True,
        crop: bool = True,
        normalise: bool = True,
        foreground: float = 0.15,
        occupancy: float = 0.05,
        margin: float = 0.04,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # affine_transform (ImageProjectiveTransformV3 on TensorFlow) has no XLA kernel: a model
        # compiled with jit_compile=True runs this layer outside XLA, as Keras's RandomRotation.
        self.supports_jit = False
        self.greyscale, self.crop, self.normalise = greyscale, crop, normalise
        self.foreground, self.occupancy, self.margin = foreground, occupancy, margin

    def call(self, images):
        images = ops.cast(images, "float32")
        if self.greyscale:
            images = ops.repeat(ops.mean(images, axis=-1, keepdims=True), 3, axis=-1)
        if self.crop:
            images = self._crop_to_foreground(images)
        if self.normalise:
            grey = ops.mean(images, axis=-1)
            low, high = (level[:, None, None, None] for level in image_quantiles(grey, (0.01, 0.995)))
            images = ops.clip((images - low) / ops.maximum(high - low, 1.0) * 255.0, 0.0, 255.0)
        return ops.cast(images, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def _crop_to_foreground(self, images):
        return self.crop_like(images, images)

    def crop_like(self, images, others, interpolation: str = "bilinear"):
        """``others`` (a batch of the same height and width, such as tumour masks) cropped and
        scaled as this layer crops ``images``: what lines up with the model's view of them."""
        return ops.image.affine_transform(
            ops.cast(others, "float32"),
            self._crop_transform(ops.cast(images, "float32")),
            interpolation=interpolation,
            fill_mode="constant",
            fill_value=0,
        )

    def _crop_transform(self, images):
        shape = ops.shape(images)
        height, width = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")
        grey = ops.mean(images, axis=-1)
        level = image_quantiles(grey, (0.99,))[0][:, None, None] * self.foreground
        mask = ops.cast(grey > ops.maximum(level, 1.0), "float32")
        # A row or column belongs to the head when a share of its pixels does: specks of
        # background noise above the level do not.
        rows = ops.cast(ops.mean(mask, axis=2) > self.occupancy, "float32")
        columns = ops.cast(ops.mean(mask, axis=1) > self.occupancy, "float32")

        def extent(occupied, size):  # first and last occupied index; the whole axis if none
            first = ops.cast(ops.argmax(occupied, axis=1), "float32")
            last = size - 1 - ops.cast(ops.argmax(ops.flip(occupied, axis=1), axis=1), "float32")
            empty = ops.max(occupied, axis=1) < 0.5
            return ops.where(empty, 0.0, first), ops.where(empty, size - 1, last)

        top, bottom = extent(rows, height)
        left, right = extent(columns, width)
        side = ops.maximum(bottom - top, right - left) + 1
        side = side * (1 + 2 * self.margin)
        centre_y, centre_x = (top + bottom) / 2, (left + right) / 2
        # Output pixel (x, y) samples input (x * scale_x + offset_x, y * scale_y + offset_y).
        scale_x, scale_y = side / width, side / height
        offset_x = centre_x - scale_x * (width - 1) / 2
        offset_y = centre_y - scale_y * (height - 1) / 2
        zeros = ops.zeros_like(scale_x)
        return ops.stack([scale_x, zeros, offset_x, zeros, scale_y, offset_y, zeros, zeros], axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "greyscale": self.greyscale,
            "crop": self.crop,
            "normalise": self.normalise,
            "foreground": self.foreground,
            "occupancy": self.occupancy,
            "margin": self.margin,
        }


def make_backbone(
    backbone: str, weights: str | None, image_size: Sequence[int], alpha: float = 1.0
) -> keras.Model:
    """Build a headless backbone with ``weights``: "imagenet", None, or a weights file path."""
    constructor = backbone_spec(backbone).constructor
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


def resolve_weights(weights: str | None) -> str | None:
    """``weights`` as given, except a weights file that is not there: then Keras's ImageNet
    download, with a note. Lets a profile name a local copy (``../shared/weights/...``) that a
    reader elsewhere does not have."""
    if weights in (None, "imagenet") or Path(weights).is_file():
        return weights
    print(f"No weights file at {weights}; using weights='imagenet' (Keras downloads them).")
    return "imagenet"


def build_classifier(
    backbone: str,
    weights: str | None,
    image_size: int | Sequence[int] | None,
    num_classes: int,
    dropout: float = 0.3,
    alpha: float = 1.0,
    standardise: bool = False,
) -> tuple[keras.Model, keras.Model]:
    """Return ``(model, backbone)``: raw 0-255 RGB images in, class probabilities out.

    The model resizes any input to ``image_size`` (None: the backbone's own size; bilinear,
    which XLA compiles, see :func:`medclass.pipeline.resize_image`) and applies
    the backbone's own preprocessing, so training, evaluation and the app all feed it plain
    pixels. The backbone is called with ``training=False``, which holds when the model is
    called directly; inside ``fit``, Keras 3 passes ``training=True`` to every layer of a
    functional model regardless (keras-team/keras#20285), and what keeps BatchNormalization in
    inference mode is that its layers stay non-trainable (:func:`unfreeze_top_blocks`).
    The output layer computes in float32, so the model also trains under mixed precision.
    With ``standardise=True`` a :class:`SliceStandardisation` layer (greyscale, crop to the
    foreground, intensity stretch) sits between resizing and the backbone's preprocessing.
    Written out in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb), which
    teaches it; tests/test_chapter_code.py keeps the two identical.
    """
    image_size = image_size_for(backbone, image_size)
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes.")
    base = make_backbone(backbone, weights, image_size, alpha)
    base.trainable = False
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = layers.Resizing(*image_size, name="resize")(inputs)
    if standardise:
        x = SliceStandardisation(name="standardise")(x)
    x = BackbonePreprocessing(backbone_spec(backbone).preprocessing, name="preprocess")(x)
    x = base(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    if num_classes == 2:
        outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    else:
        outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_classifier"), base


def batch_norm_layers(backbone: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in backbone.layers if isinstance(layer, layers.BatchNormalization)]


def calibrate_batch_norm(model: keras.Model, backbone: keras.Model, dataset, batches: int = 8) -> None:
    """Set the moving mean and variance of every BatchNormalization layer of ``backbone`` to
    their average over the first ``batches`` batches of ``dataset`` (``(images, labels)``
    batches fed to ``model``, a model of :func:`build_classifier`), layer after layer as the
    images flow through; no weight changes.

    A randomly initialised backbone starts from moving statistics of 0 and 1, which normalise
    nothing in inference mode: frozen, its activations shrink block after block, and its
    pooled features come out nearly constant, so a head on them has nothing to fit. Calibrated,
    the random backbone is a control that can learn: what the architecture alone gives.
    Call it before training; ``backbone`` is left frozen or not, as it was.
    """
    into_backbone = keras.Model(model.input, model.get_layer("preprocess").output)
    norms = batch_norm_layers(backbone)
    trainable, momenta = backbone.trainable, [norm.momentum for norm in norms]
    backbone.trainable = True  # a BatchNormalization layer updates its statistics only then
    try:
        for count, (images, _) in enumerate(dataset.take(batches), start=1):
            for norm in norms:  # a running mean of the batches' statistics
                norm.momentum = (count - 1) / count
            backbone(into_backbone(images), training=True)
    finally:
        backbone.trainable = trainable
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum


def backbone_blocks(backbone: keras.Model) -> list[tuple[str, list]]:
    """The backbone's layers grouped into its blocks, input to output: ``[(name, layers)]``.

    Blocks are read from the layer names Keras gives them (``conv4_block2_...`` in ResNet50,
    ``block6a_...`` in EfficientNet, ``block_13_...`` in MobileNetV2). Layers before the first
    block form the "stem"; the final 1x1 convolution after the last block joins that block.
    """
    blocks: list[tuple[str, list]] = [("stem", [])]
    for layer in backbone.layers:
        match = BLOCK_NAME.match(layer.name)
        if match and match.group(1) != blocks[-1][0]:
            blocks.append((match.group(1), []))
        blocks[-1][1].append(layer)
    if len(blocks) == 1:
        raise ValueError(
            f"Found no blocks in {backbone.name}: its layer names match none of the known patterns."
        )
    return blocks


def unfreeze_top_blocks(backbone: keras.Model, n_blocks: int) -> list[str]:
    """Make the top ``n_blocks`` blocks of ``backbone`` trainable, BatchNorm excepted.

    A non-trainable BatchNormalization layer runs in inference mode in Keras 3, even
    inside ``fit``: its ImageNet mean and variance are kept, not overwritten by small
    new batches. Returns the names of the unfrozen blocks, top first.
    """
    blocks = backbone_blocks(backbone)[1:]
    if not 0 <= n_blocks <= len(blocks):
        available = f"{backbone.name} has {len(blocks)} blocks"
        raise ValueError(f"unfreeze_blocks={n_blocks}: {available}; use 0 to {len(blocks)}.")
    backbone.trainable = True
    unfrozen = blocks[len(blocks) - n_blocks :]
    trainable_layers = {id(layer) for _, block in unfrozen for layer in block}
    for layer in backbone.layers:
        is_batch_norm = isinstance(layer, layers.BatchNormalization)
        layer.trainable = id(layer) in trainable_layers and not is_batch_norm
    return [name for name, _ in reversed(unfrozen)]
