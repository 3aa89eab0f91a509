"""Grad-CAM mechanics: the layer it explains, heatmap shape and range, overlays."""

from __future__ import annotations

import numpy as np
import pytest

from medclass import gradcam, models


@pytest.mark.parametrize(
    "backbone, layer",
    [("resnet50", "conv5_block3_out"), ("efficientnet_b0", "top_activation"), ("mobilenet_v2", "out_relu")],
)
def test_the_last_convolutional_layer_is_found(backbone, layer):
    model, base = models.build_classifier(backbone, None, (64, 64), 3, alpha=0.35)
    assert gradcam.last_conv_layer(base) == layer
    assert gradcam.find_backbone(model) is base


@pytest.mark.parametrize("num_classes", [2, 4])
def test_heatmaps_match_the_images_and_lie_in_0_1(num_classes):
    model, _ = models.build_classifier("mobilenet_v2", None, (64, 64), num_classes, alpha=0.35)
    images = np.random.default_rng(0).uniform(0, 255, (3, 80, 96, 3)).astype("float32")
    for layer in (None, "block_13_expand_relu"):
        heatmaps = gradcam.gradcam(model, images, class_index=1, layer=layer)
        assert heatmaps.shape == (3, 80, 96)
        assert heatmaps.min() >= 0 and heatmaps.max() <= 1 + 1e-6
    blended = gradcam.overlay(images[0], heatmaps[0])
    assert blended.shape == (80, 96, 3) and blended.dtype == np.uint8


def test_peak_inside_reads_the_hottest_pixel():
    heatmap = np.zeros((10, 10))
    heatmap[2, 7] = 1
    mask = np.zeros((10, 10), bool)
    mask[1:4, 6:9] = True
    assert gradcam.peak_inside(heatmap, mask)
    assert not gradcam.peak_inside(heatmap, ~mask)


def test_a_model_without_a_backbone_is_refused():
    import keras

    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="Expected one backbone model"):
        gradcam.find_backbone(plain)
