"""Plain and residual networks side by side, gradient norms, and ResNet50's anatomy.

First used in chapter "Residual networks" (notebooks/concepts_02_resnet.ipynb).

The experiment follows He et al. (2016): networks of the same depth and width, identical but
for BatchNormalization and the identity shortcuts ``x + F(x)``, trained on a small task (the
8x8 handwritten digits that ship with scikit-learn, so it runs offline in a minute).
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import layers

# Keras's default (0.99) averages the batch statistics over about a hundred steps; a short
# experiment of a few hundred steps needs a faster average for its validation predictions.
BN_MOMENTUM = 0.9


def digits(seed: int = 0, validation: float = 0.25):
    """scikit-learn's 1,797 handwritten digits (8x8, 10 classes), scaled to [0, 1] and split.

    Returns ``(x_train, y_train, x_val, y_val)``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images = load_digits()
    x = (images.images[..., None] / 16.0).astype("float32")
    return tuple(
        train_test_split(x, images.target, test_size=validation, random_state=seed, stratify=images.target)[i]
        for i in (0, 2, 1, 3)
    )


def deep_cnn(
    depth: int,
    width: int,
    residual: bool,
    batch_norm: bool,
    input_shape=(8, 8, 1),
    num_classes: int = 10,
    seed: int = 0,
) -> keras.Model:
    """A stem convolution, ``depth`` 3x3 convolutions of ``width`` filters, global pooling, softmax.

    With ``batch_norm`` each convolution is followed by BatchNormalization (and He
    initialisation, as in ResNet); without it the convolutions use Keras's default Glorot
    initialisation. With ``residual=True`` each convolution's output is added to its input before
    the ReLU, an identity shortcut: the layer learns a correction ``F(x)`` to ``x`` instead of a
    whole new ``x``. The shortcuts add no weights. The chapter writes this function in a cell;
    the two are kept identical (tests/test_chapter_code.py).
    """
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="conv_0")(inputs)
    for index in range(1, depth + 1):
        initializer = (keras.initializers.HeNormal if batch_norm else keras.initializers.GlorotUniform)(
            seed=seed + index
        )
        y = layers.Conv2D(
            width,
            3,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer=initializer,
            name=f"conv_{index}",
        )(x)
        if batch_norm:
            y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn_{index}")(y)
        if residual:
            y = layers.Add(name=f"shortcut_{index}")([x, y])
        x = layers.Activation("relu", name=f"relu_{index}")(y)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    name = f"{'residual' if residual else 'plain'}{'_bn' if batch_norm else ''}_{depth}"
    return keras.Model(inputs, outputs, name=name)


def gradient_norms(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> pd.Series:
    """The norm of the loss gradient with respect to each convolution's kernel, input to output.

    Measured on one batch with TensorFlow's ``GradientTape``; small norms in the first layers
    mean those layers barely learn: the vanishing gradient. The chapter writes this function in
    a cell; the two are kept identical (tests/test_chapter_code.py).
    """
    kernels = {layer.name: layer.kernel for layer in model.layers if isinstance(layer, layers.Conv2D)}
    with tf.GradientTape() as tape:
        predictions = model(np.asarray(images, dtype="float32"), training=True)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(np.asarray(labels), predictions))
    gradients = tape.gradient(loss, list(kernels.values()))
    return pd.Series(
        [float(tf.norm(gradient)) for gradient in gradients],
        index=list(kernels),
        name=model.name,
    )


RESNET_BLOCK = re.compile(r"^conv(\d)_block(\d+)_")


def resnet_stages(model: keras.Model) -> pd.DataFrame:
    """ResNet50's stages read from the Keras model: blocks, convolutions on the main path,
    projection shortcuts, parameters and output shape.

    A bottleneck block is a 1x1 convolution that narrows the channels, a 3x3 convolution, and a
    1x1 convolution that widens them again (four times), added to the shortcut; the first block
    of a stage also projects its shortcut with a 1x1 convolution to the new shape.
    """
    rows: dict[str, dict] = {}
    for layer in model.layers:
        match = RESNET_BLOCK.match(layer.name)
        if match:
            stage = f"conv{match.group(1)}"
        elif layer.name.startswith(("conv1", "pool1")):
            stage = "stem"
        else:
            continue
        row = rows.setdefault(
            stage,
            {"stage": stage, "blocks": set(), "convolutions": 0, "projection shortcuts": 0, "parameters": 0},
        )
        if match:
            row["blocks"].add(int(match.group(2)))
        if isinstance(layer, layers.Conv2D):
            row["projection shortcuts" if layer.name.endswith("_0_conv") else "convolutions"] += 1
        row["parameters"] += layer.count_params()
        row["output"] = tuple(layer.output.shape[1:])
    table = pd.DataFrame(rows.values())
    table["blocks"] = table["blocks"].map(len)
    return table.set_index("stage")


def block_layers(model: keras.Model, block: str = "conv2_block1") -> pd.DataFrame:
    """The layers of one ResNet50 block in order, with their output shapes."""
    return pd.DataFrame(
        [
            {"layer": layer.name, "type": type(layer).__name__, "output": tuple(layer.output.shape[1:])}
            for layer in model.layers
            if layer.name.startswith(f"{block}_")
        ]
    )
