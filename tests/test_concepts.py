"""The concept chapters' helpers: convolution arithmetic, residual networks, transfer strategies."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest

from medclass import models
from medclass.concepts import convolution, residual, transfer

ROOT = Path(__file__).resolve().parents[1]


def test_a_sobel_filter_answers_at_a_vertical_edge_and_nowhere_else():
    image = np.zeros((12, 12), "float32")
    image[:, 6:] = 1.0  # dark left half, bright right half
    response = convolution.convolve(image, convolution.HAND_MADE_FILTERS["vertical edges (Sobel x)"])
    assert response.shape == image.shape
    assert np.abs(response[3:9, 5:7]).min() == pytest.approx(4.0)  # both columns beside the edge
    assert np.abs(response[3:9, 1:4]).max() == 0 and np.abs(response[3:9, 8:11]).max() == 0
    across = convolution.convolve(image, convolution.HAND_MADE_FILTERS["horizontal edges (Sobel y)"])
    assert np.abs(across[3:9, 3:9]).max() == 0, "a vertical edge has no horizontal component"


@pytest.mark.parametrize(
    "size, kernel, stride, padding",
    [(32, 3, 1, "same"), (32, 3, 1, "valid"), (33, 3, 2, "same"), (31, 5, 2, "valid"), (224, 7, 2, "same")],
)
def test_the_output_size_formula_agrees_with_keras(size, kernel, stride, padding):
    computed = convolution.convolve(np.ones((size, size)), np.ones((kernel, kernel)), stride, padding)
    assert computed.shape == (convolution.output_size(size, kernel, stride, padding),) * 2


def test_receptive_fields_grow_with_kernels_and_strides():
    rows = convolution.receptive_fields([("a", 3, 1), ("b", 3, 1), ("pool", 2, 2), ("c", 3, 1)])
    assert [row["receptive field"] for row in rows] == [3, 5, 6, 10]
    assert rows[-1]["jump"] == 2


def test_parameter_counts_match_keras():
    counts = convolution.parameter_counts(32, 32, 3, 8, kernel=5)
    dense, conv = keras.layers.Dense(8), keras.layers.Conv2D(8, 5)
    dense.build((None, 32 * 32 * 3))
    conv.build((None, 32, 32, 3))
    assert counts == {"dense": dense.count_params(), "convolution": conv.count_params()}


def test_first_layer_filters_and_feature_maps_come_from_the_backbone():
    _, base = models.build_classifier("mobilenet_v2", None, (64, 64), 2, alpha=0.35)
    filters = convolution.first_layer_filters(base)
    assert filters.shape == (16, 3, 3, 3) and filters.min() >= 0 and filters.max() <= 1
    maps = convolution.feature_maps(base, np.zeros((1, 64, 64, 3), "float32"), "block_1_expand_relu")
    assert maps.shape[:3] == (1, 32, 32)


def test_shortcuts_add_no_weights_and_keep_the_gradient_alive():
    x, y, _, _ = residual.digits()
    plain = residual.deep_cnn(12, 8, residual=False, batch_norm=False)
    shortcut = residual.deep_cnn(12, 8, residual=True, batch_norm=False)
    assert plain.count_params() == shortcut.count_params()
    plain_norms = residual.gradient_norms(plain, x[:64], y[:64])
    shortcut_norms = residual.gradient_norms(shortcut, x[:64], y[:64])
    assert len(plain_norms) == 13 and list(plain_norms.index[:2]) == ["conv_0", "conv_1"]
    # The measured effect the chapter shows: orders of magnitude, not a few percent.
    assert shortcut_norms.median() > 100 * plain_norms.median()


def test_resnet50_is_counted_from_the_keras_model():
    stages = residual.resnet_stages(models.make_backbone("resnet50", None, (64, 64)))
    assert stages.loc[["conv2", "conv3", "conv4", "conv5"], "blocks"].tolist() == [3, 4, 6, 3]
    assert stages["convolutions"].sum() == 49, "49 + the dense layer = ResNet-50"
    assert stages["projection shortcuts"].sum() == 4


@pytest.mark.slow
def test_fine_tuning_keeps_batch_norm_statistics_unless_its_layers_are_trainable():
    """Keras 3 overrides the backbone's training=False inside fit (keras-team/keras#20285): what
    protects the ImageNet statistics is that unfreeze_top_blocks leaves BatchNormalization frozen."""
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    labels = np.array([0, 1] * 4, "float32")
    for batch_norm_trainable in (False, True):
        model, base = models.build_classifier("mobilenet_v2", None, (32, 32), 2, alpha=0.35)
        models.unfreeze_top_blocks(base, 17)
        norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
        for norm in norms:
            norm.trainable = batch_norm_trainable
        before = [np.asarray(norm.moving_variance).copy() for norm in norms]
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.fit(images, labels, epochs=1, verbose=0)
        changed = [
            not np.allclose(b, np.asarray(n.moving_variance)) for b, n in zip(before, norms, strict=True)
        ]
        assert all(changed) if batch_norm_trainable else not any(changed)


def test_a_calibrated_random_backbone_gives_features_a_head_can_use():
    """Issue 18, item 3: frozen with Keras's initial BatchNormalization statistics, a random
    MobileNetV2's pooled features are nearly constant, and the random-features control could
    only learn the class prior; calibrated on the images, they spread. No weight changes."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (32, 48, 48, 3)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(32, "float32"))).batch(8)
    keras.utils.set_random_seed(0)
    model, base = models.build_classifier("mobilenet_v2", None, (48, 48), 2, alpha=0.35)
    weights = [np.asarray(w).copy() for w in base.trainable_weights + base.non_trainable_weights]
    momenta = [norm.momentum for norm in models.batch_norm_layers(base)]
    before = transfer.pooled_feature_std(model, dataset)
    models.calibrate_batch_norm(model, base, dataset, batches=4)
    after = transfer.pooled_feature_std(model, dataset)
    assert before < 1e-4 < 1e-2 < after, (before, after)
    assert not base.trainable, "left frozen, as it was"
    assert [norm.momentum for norm in models.batch_norm_layers(base)] == momenta, "given back"
    unchanged = [
        np.array_equal(w, np.asarray(v))
        for w, v in zip(weights, base.trainable_weights + base.non_trainable_weights, strict=True)
        if "moving" not in v.path
    ]
    assert all(unchanged), "only the moving statistics change"


@pytest.mark.slow
def test_one_and_two_phase_strategies_train_for_the_same_budget(synthetic_dir):
    """A one-phase strategy and the two-phase one with the most steps (fine-tuning with
    BatchNormalization training) train for the same epochs; all five run in the transfer
    chapter, which the demo book and the Colab rehearsal execute."""
    from medclass import data, pipeline, splits

    frame = splits.split_frame(data.load_dataset("brain_mri", synthetic_dir), seed=0)
    names, size = ["Healthy", "Tumor"], (32, 32)
    train = pipeline.make_dataset(frame[frame.split == "train"], names, size, 16, training=True)
    val = pipeline.make_dataset(frame[frame.split == "val"], names, size, 16)
    setup = transfer.Setup("mobilenet_v2", None, size, alpha=0.35, epochs=2, unfreeze_blocks=2)
    chosen = ("random features, frozen", "ImageNet, fine-tuned, BatchNorm training")
    summary, histories = transfer.compare(setup, train, val, strategies=chosen)
    assert list(summary.index) == list(chosen)
    assert histories.groupby("strategy").size().eq(2).all(), "two epochs each, fine-tuning included"
    assert (summary["seconds"] > 0).all()
    assert summary.loc["random features, frozen", "pooled feature std"] > 1e-2, "a control that can learn"
    with pytest.raises(ValueError, match="strategy="):
        transfer.train_strategy("half-frozen", setup, train, val)


def test_a_missing_weights_file_falls_back_to_the_keras_download(tmp_path, capsys):
    existing = tmp_path / "w.weights.h5"
    existing.write_bytes(b"")
    assert models.resolve_weights(str(existing)) == str(existing)
    assert models.resolve_weights(None) is None
    assert models.resolve_weights(str(tmp_path / "missing.weights.h5")) == "imagenet"
    assert "No weights file" in capsys.readouterr().out


def test_the_chapters_keras_cells_run_in_a_fresh_namespace_with_keras_alone():
    """The cells that define the networks need nothing from the book's package."""
    import nbformat

    notebook = nbformat.read(ROOT / "notebooks" / "concepts_02_resnet.ipynb", as_version=4)
    cells = [
        cell.source
        for cell in notebook.cells
        if cell.cell_type == "code" and re.search(r"^def (deep_cnn|gradient_norms)\(", cell.source, re.M)
    ]
    namespace: dict = {}
    exec(
        "import keras\nimport numpy as np\nimport pandas as pd\nimport tensorflow as tf\n"
        "from keras import layers\n" + "\n".join(cells),
        namespace,
    )
    x, y, _, _ = residual.digits()
    network = namespace["deep_cnn"](6, 8, residual=True, batch_norm=True)
    norms = namespace["gradient_norms"](network, x[:32], y[:32])
    assert len(norms) == 7 and (norms > 0).all()
    assert any(isinstance(layer, keras.layers.Add) for layer in network.layers)
