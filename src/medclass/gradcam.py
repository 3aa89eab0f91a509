"""Grad-CAM: which part of the image drove the prediction (Selvaraju et al., 2017).

Defined in chapter "Brain MRI: evaluation" (notebooks/brain_03_evaluation.ipynb).

For a class score y and the feature maps A of a convolutional layer, Grad-CAM weights each map
by the average gradient dy/dA over its pixels and keeps the positive part of the weighted sum:
a coarse heatmap, at that layer's resolution, of where evidence for the class lies. The last
convolutional layer is chosen automatically (the deepest layer of the backbone with a spatial
output); pass ``layer`` to look elsewhere.

Gradients need a backend's autodiff; this module uses TensorFlow's ``GradientTape``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def find_backbone(model: keras.Model) -> keras.Model:
    """The nested backbone model inside a classifier from :func:`medclass.models.build_classifier`."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ValueError(f"Expected one backbone model inside {model.name}, found {len(nested)}.")
    return nested[0]


def last_conv_layer(backbone: keras.Model) -> str:
    """The name of the deepest layer with a spatial (4-D) output: ResNet50's ``conv5_block3_out``,
    EfficientNet's ``top_activation``, MobileNetV2's ``out_relu``."""
    for layer in reversed(backbone.layers):
        if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4:
            return layer.name
    raise ValueError(f"{backbone.name} has no layer with a spatial output to explain.")


def gradcam(
    model: keras.Model,
    images: np.ndarray,
    class_index: int | None = None,
    layer: str | None = None,
) -> np.ndarray:
    """Heatmaps in [0, 1], one per image, at the images' own height and width.

    ``class_index`` is the class to explain: None explains the predicted class. For a binary
    (sigmoid) model, 1 explains the positive class (Tumor), 0 the negative one.
    """
    images = np.asarray(images, dtype="float32")
    backbone = find_backbone(model)
    layer = layer or last_conv_layer(backbone)
    to_backbone = keras.Model(model.input, model.get_layer("preprocess").output)
    inside = keras.Model(backbone.input, [backbone.get_layer(layer).output, backbone.output])
    head = [model.get_layer("pool"), model.get_layer("dropout"), model.layers[-1]]
    x = to_backbone(images, training=False)
    with tf.GradientTape() as tape:
        maps, features = inside(x, training=False)
        tape.watch(maps)
        outputs = features
        for part in head:
            outputs = part(outputs, training=False)
        outputs = tf.cast(outputs, tf.float32)
        if outputs.shape[-1] == 1:
            probability = outputs[:, 0]
            if class_index is None:
                chosen = tf.cast(probability >= 0.5, tf.float32)
            else:
                chosen = tf.fill(tf.shape(probability), float(class_index))
            score = chosen * probability + (1 - chosen) * (1 - probability)
        else:
            if class_index is None:
                index = tf.argmax(outputs, axis=-1)
            else:
                index = tf.fill([tf.shape(outputs)[0]], class_index)
            score = tf.gather(outputs, index, batch_dims=1)
    gradients = tape.gradient(score, maps)
    weights = tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(maps, tf.float32), axis=-1))
    cam = cam / (tf.reduce_max(cam, axis=(1, 2), keepdims=True) + 1e-8)
    cam = tf.image.resize(cam[..., None], images.shape[1:3], method="bilinear")[..., 0]
    return cam.numpy()


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The image (0-255, RGB) blended with the heatmap in the 'jet' colour map, as uint8."""
    import matplotlib

    colours = matplotlib.colormaps["jet"](heatmap)[..., :3] * 255
    blended = (1 - alpha) * np.asarray(image, dtype="float32") + alpha * colours
    return np.clip(blended, 0, 255).astype("uint8")


def peak_inside(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the heatmap's hottest pixel lies inside ``mask`` (same height and width)."""
    row, column = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return bool(mask[row, column])
