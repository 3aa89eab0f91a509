"""A model folder is read back whole and checked: the app and the report refuse what they
cannot serve with the same words (issue 32, items 5 and 6)."""

from __future__ import annotations

import json
import zipfile

import keras
import pytest

from medclass import records, saved_models


def save(folder, model, **info):
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    record = {"class_names": ["Healthy", "Tumor"], "image_size": [32, 32], **info}
    (folder / "model.json").write_text(json.dumps(record))
    return folder


def classifier(units=1, activation="sigmoid", input_shape=(None, None, 3), outputs=1):
    inputs = keras.Input(input_shape)
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    heads = [keras.layers.Dense(units, activation=activation, name=f"out{i}")(pooled) for i in range(outputs)]
    return keras.Model(inputs, heads if outputs > 1 else heads[0])


def test_a_model_of_the_book_s_shape_is_read_back(tmp_path):
    model, info = saved_models.load_model(save(tmp_path / "m", classifier()))
    assert info["class_names"] == ["Healthy", "Tumor"] and model.outputs[0].shape[-1] == 1


@pytest.mark.parametrize(
    ("model", "info", "message"),
    [
        (classifier(outputs=2), {}, "the model has 2 outputs; one is expected"),
        (classifier(units=3, activation="softmax"), {}, r"gives 3 output\(s\) but model.json names 2"),
        (
            classifier(units=1),
            {"class_names": ["a", "b", "c"]},
            r"gives 1 output\(s\) but model.json names 3",
        ),
        (classifier(input_shape=(64, 64, 3)), {}, "takes 64x64 px images but model.json says image_size"),
        (classifier(activation="linear"), {}, "activation 'linear', so its outputs are not probabilities"),
    ],
    ids=["two-outputs", "three-outputs-two-names", "three-names-one-output", "fixed-input", "linear"],
)
@pytest.mark.case(
    "32.5",
    "a model with two outputs, outputs that do not match the class names, a fixed 64x64 input, a linear "
    "(not sigmoid or softmax) output",
    "refused when loaded, by the app, the report and the chapters alike, saying why and to train again",
)
def test_a_model_that_does_not_give_one_probability_per_class_is_refused(tmp_path, model, info, message):
    folder = save(tmp_path / "m", model, **info)
    with pytest.raises(saved_models.ModelFileError, match=message):
        saved_models.load_model(folder)


@pytest.mark.case(
    "32.5",
    "model.json with image_size [100000, 100000]; class_names ['Tumor', 'Normal'] on a binary model",
    "refused: image sides from 1 to 2048; a finding named first would show every tumour as normal",
)
def test_an_impossible_size_or_a_finding_named_first_is_refused(tmp_path):
    folder = save(tmp_path / "m", classifier(), image_size=[100000, 100000])
    with pytest.raises(records.RecordError, match="from 1 to 2048"):
        saved_models.load_model(folder)
    folder = save(tmp_path / "n", classifier(), class_names=["Tumor", "Normal"])
    with pytest.raises(records.RecordError, match="put the finding 'Tumor' first"):
        saved_models.load_model(folder)


@pytest.mark.case(
    "32.6",
    "a model.keras cut short, a model folder without model.json",
    "refused by name ('not a whole Keras model file', 'no model.json'), not 'File not found' or KeyError",
)
def test_a_cut_short_model_or_a_missing_sidecar_is_named(tmp_path):
    folder = save(tmp_path / "m", classifier())
    whole = (folder / "model.keras").read_bytes()
    (folder / "model.keras").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(saved_models.ModelFileError, match="not a whole Keras model file"):
        saved_models.load_model(folder)
    (folder / "model.keras").write_bytes(whole)
    (folder / "model.json").unlink()
    with pytest.raises(saved_models.ModelFileError, match="no model.json"):
        saved_models.load_model(folder)


@pytest.mark.case(
    "32.5",
    "a 3 MB model.keras whose weights inflate to 3 GiB",
    "refused from the archive's directory before anything is unpacked",
)
def test_a_model_file_that_inflates_past_the_limit_is_refused_unread(tmp_path, monkeypatch):
    folder = save(tmp_path / "m", classifier())
    with zipfile.ZipFile(folder / "model.keras", "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("padding.bin", bytes(4 * 2**20))  # 4 MiB of zeros, a few kB packed
    monkeypatch.setattr(saved_models, "MAX_UNPACKED_BYTES", 2**20)  # the same test at 1 MiB
    with pytest.raises(saved_models.ModelFileError, match="unpacks to .* refused unread"):
        saved_models.load_model(folder)
