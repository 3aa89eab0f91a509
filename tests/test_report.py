"""External evaluation of a saved model on another folder, and the model card it writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclass import calibration, data, evaluation, pipeline, report, saved_models
from tests.conftest import write_evaluation, write_image

CLASS_NAMES = ["Healthy", "Tumor"]


@pytest.mark.case(
    7,
    "an external folder with a text file and a too-small image",
    "the card says '2 files skipped'; skipped.csv lists them",
)
def test_a_plain_class_folder_is_evaluated_into_a_report(saved_model, synthetic_dir, tmp_path):
    hospital = tmp_path / "other_hospital"
    frame = data.load_dataset("brain_mri", synthetic_dir).head(30)
    for index, row in frame.iterrows():
        target = hospital / row["label"].lower() / f"scan_{index}.jpg"  # lower-case folder names
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(row["path"], target)
    (hospital / "tumor" / "notes.txt").write_text("not an image")
    write_image(hospital / "healthy" / "tiny.png", size=(8, 8), fmt="PNG")
    table = report.evaluate_folder(saved_model, hospital, tmp_path / "report")
    assert {"accuracy", "sensitivity", "specificity", "ROC-AUC"} <= set(table.index)
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert {
        "metrics.csv",
        "report.csv",
        "predictions.csv",
        "confusion_matrix.png",
        "model_card.md",
    } <= written
    predictions = pd.read_csv(tmp_path / "report" / "predictions.csv")
    assert len(predictions) == 30 and set(predictions["predicted"]) <= set(CLASS_NAMES)
    card = (tmp_path / "report" / "model_card.md").read_text()
    assert "not a medical device" in card and "2 files skipped" in card and "| accuracy |" in card
    skipped = pd.read_csv(tmp_path / "report" / "skipped.csv")
    assert sorted(Path(path).name for path in skipped["path"]) == ["notes.txt", "tiny.png"]
    assert skipped["reason"].str.len().min() > 0
    # The report's accuracy is the model's own, recomputed independently.
    model, _ = saved_models.load_model(saved_model)
    y, p = evaluation.predict_probabilities(
        model, pipeline.make_dataset(report.load_folder(hospital, CLASS_NAMES), CLASS_NAMES, (48, 48), 8)
    )
    assert table.loc["accuracy", "value"] == pytest.approx(((p >= 0.5) == y).mean())


@pytest.mark.case(
    "32.6",
    "an external folder whose class folders hold only files that are not images",
    "'hold no usable image', with the skipped files and why (not 'Expected sub-folders named ...')",
)
def test_external_folders_that_cannot_be_used_say_why(saved_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.evaluate_folder(saved_model, tmp_path / "missing", tmp_path / "out")
    (tmp_path / "texts" / "Tumor").mkdir(parents=True)
    (tmp_path / "texts" / "Tumor" / "notes.txt").write_text("not an image")
    with pytest.raises(
        ValueError, match=r"class folders .* hold no usable image: all 1 file\(s\) were skipped"
    ):
        report.load_folder(tmp_path / "texts", CLASS_NAMES)
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    with pytest.raises(
        ValueError, match=r"sub-folders named after the model's classes: \['Healthy', 'Tumor'\]"
    ):
        report.load_folder(tmp_path / "empty", CLASS_NAMES)


def copy_scans(synthetic_dir, hospital, folders: dict[str, str], n: int = 12) -> None:
    """``n`` synthetic scans into ``hospital``, each label's under the folder ``folders`` names."""
    frame = data.load_dataset("brain_mri", synthetic_dir).groupby("label").head(n // 2)
    for index, row in frame.iterrows():
        if row["label"] in folders:
            target = hospital / folders[row["label"]] / f"scan_{index}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(row["path"], target)


@pytest.mark.case(
    7,
    "external class folders Normal/ and Abnormal/ that name no class",
    "refused with --map as the fix; with one class known, the card lists the folders not read",
)
def test_folders_that_name_no_class_are_reported_or_mapped(saved_model, synthetic_dir, tmp_path):
    hospital = tmp_path / "hospital"
    copy_scans(synthetic_dir, hospital, {"Healthy": "Normal", "Tumor": "Abnormal"})
    with pytest.raises(ValueError, match="name no class: .*Abnormal.*--map"):
        report.evaluate_folder(saved_model, hospital, tmp_path / "report")
    copy_scans(synthetic_dir, hospital, {"Tumor": "Tumor"})
    report.evaluate_folder(saved_model, hospital, tmp_path / "report")
    card = (tmp_path / "report" / "model_card.md").read_text()
    assert "**not read**" in card and "Normal" in card and "No usable images of: Healthy" in card
    table = report.evaluate_folder(
        saved_model, hospital, tmp_path / "mapped", mapping={"Normal": "Healthy", "Abnormal": "Tumor"}
    )
    assert "ROC-AUC" in table.index
    assert "not read" not in (tmp_path / "mapped" / "model_card.md").read_text()
    with pytest.raises(ValueError, match="'Sick' is not one of the model's classes"):
        report.load_folder(hospital, CLASS_NAMES, {"Abnormal": "Sick"})


@pytest.mark.case(7, "an external folder whose name is not UTF-8", "reported, not a crash")
def test_a_folder_name_that_is_not_utf8_is_reported_not_a_crash(saved_model, synthetic_dir, tmp_path):
    import os

    hospital = tmp_path / "hospital"
    copy_scans(synthetic_dir, hospital, {"Healthy": "Healthy", "Tumor": "Tumor"})
    os.makedirs(os.fsencode(hospital / "Tumor") + b"/scans\xff")
    shutil.copy(
        next((hospital / "Tumor").glob("*.jpg")), os.fsencode(hospital / "Tumor") + b"/scans\xff/a.jpg"
    )
    frame = report.load_folder(hospital, CLASS_NAMES)
    assert any("not UTF-8" in folder for folder in frame.attrs["ignored_folders"])
    frame.to_csv(tmp_path / "frame.csv")


@pytest.mark.case(
    7,
    "an external set with one class present and an empty class folder",
    "reports that class's recall, not accuracy 1.000",
)
def test_one_class_only_reports_its_recall_not_a_perfect_accuracy(saved_model, synthetic_dir, tmp_path):
    hospital = tmp_path / "tumours_only"
    copy_scans(synthetic_dir, hospital, {"Tumor": "Tumor"})
    (hospital / "Healthy").mkdir()
    table = report.evaluate_folder(saved_model, hospital, tmp_path / "report")
    assert list(table.index) == ["recall of Tumor (the only class present)"]
    predictions = pd.read_csv(tmp_path / "report" / "predictions.csv")
    assert table.iloc[0]["value"] == pytest.approx((predictions["predicted"] == "Tumor").mean())


@pytest.mark.case(
    7,
    "--out pointing at the model's folder",
    "refused: the folder 'holds a model'; the export's card untouched",
)
def test_the_report_never_writes_into_a_model_folder(saved_model, synthetic_dir, tmp_path):
    card = (saved_model / "model_card.md").read_text() if (saved_model / "model_card.md").exists() else None
    with pytest.raises(ValueError, match="holds a model"):
        report.evaluate_folder(saved_model, synthetic_dir, saved_model)
    assert (saved_model / "model_card.md").exists() == (card is not None)


def test_the_report_uses_the_recorded_threshold_temperature_and_tta(saved_model, synthetic_dir, tmp_path):
    model_dir = Path(shutil.copytree(saved_model, tmp_path / "model", ignore=shutil.ignore_patterns("work")))
    write_evaluation(
        model_dir, {"tta": True, "temperature": 2.0, "operating_class": "Tumor", "operating_threshold": 0.3}
    )
    report.evaluate_folder(model_dir, synthetic_dir, tmp_path / "report")
    model, _ = saved_models.load_model(model_dir)
    frame = report.load_folder(synthetic_dir, CLASS_NAMES)
    _, p = evaluation.predict_probabilities(
        model, pipeline.make_dataset(frame, CLASS_NAMES, (48, 48), 8), tta=True
    )
    expected = np.where(calibration.apply_temperature(p, 2.0) >= 0.3, "Tumor", "Healthy")
    predictions = pd.read_csv(tmp_path / "report" / "predictions.csv")
    assert (predictions["predicted"].to_numpy() == expected).all()
    assert (
        "Threshold 0.3000 (the operating point chosen on validation)"
        in (tmp_path / "report" / "model_card.md").read_text()
    )


def test_the_command_line_writes_the_report(saved_model, synthetic_dir, tmp_path, capsys):
    report.main(["--model", str(saved_model), "--data", str(synthetic_dir), "--out", str(tmp_path / "cli")])
    assert "report written to" in capsys.readouterr().out
    assert (tmp_path / "cli" / "model_card.md").exists()


def run_cli(*arguments) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        report.main([str(argument) for argument in arguments])
    return stopped.value.code


@pytest.mark.case(
    "32.6",
    "medclass.report with --out inside --data, --out an existing file, --batch-size 0, a model folder "
    "without model.json, a model.keras cut short, three class names for one output",
    "refused before any inference with one line naming the thing (exit status 2), no traceback",
)
def test_the_command_refuses_what_it_cannot_use_in_one_line(saved_model, synthetic_dir, tmp_path, capsys):
    model = Path(shutil.copytree(saved_model, tmp_path / "model", ignore=shutil.ignore_patterns("work")))
    common = ["--model", model, "--data", synthetic_dir]
    cases = [
        ([*common, "--out", synthetic_dir / "report"], "lies inside --data"),
        ([*common, "--out", model], "holds a model"),
        ([*common, "--out", tmp_path / "a_file.txt"], "is a file; name a folder"),
        ([*common, "--out", tmp_path / "r", "--batch-size", "0"], "not a whole number of at least 1"),
    ]
    (tmp_path / "a_file.txt").write_text("")
    for arguments, message in cases:
        assert run_cli(*arguments) == 2
        assert message in capsys.readouterr().err, message
    assert not (synthetic_dir / "report").exists() and not (tmp_path / "r").exists()
    info = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**info, "class_names": ["a", "b", "c"]}))
    assert run_cli(*common, "--out", tmp_path / "r") == 2
    assert "gives 1 output(s) but model.json names 3 classes" in capsys.readouterr().err
    (model / "model.json").unlink()
    assert run_cli(*common, "--out", tmp_path / "r") == 2
    assert "no model.json" in capsys.readouterr().err
    whole = (model / "model.keras").read_bytes()
    (model / "model.keras").write_bytes(whole[:1000])
    (model / "model.json").write_text(json.dumps(info))
    assert run_cli(*common, "--out", tmp_path / "r") == 2
    assert "not a whole Keras model file" in capsys.readouterr().err


@pytest.mark.case(
    "32.6",
    "folders the report does not read (Normal/, an empty class) and skipped files",
    "said in what the command prints, not only in the model card",
)
def test_the_command_says_what_it_left_out(saved_model, synthetic_dir, tmp_path, capsys):
    hospital = tmp_path / "hospital"
    copy_scans(synthetic_dir, hospital, {"Healthy": "Normal", "Tumor": "Tumor"})
    (hospital / "Tumor" / "notes.txt").write_text("not an image")
    report.main(["--model", str(saved_model), "--data", str(hospital), "--out", str(tmp_path / "r")])
    printed = capsys.readouterr().out
    assert "read 6 images: Tumor 6" in printed
    assert "skipped 1 file(s)" in printed
    assert "not read: " in printed and "Normal" in printed and "--map" in printed
    assert "no images of class Healthy" in printed


def test_flip_tta_averages_two_predictions(saved_model, synthetic_dir):
    model, _ = saved_models.load_model(saved_model)
    frame = data.load_dataset("brain_mri", synthetic_dir).head(8)
    dataset = pipeline.make_dataset(frame, CLASS_NAMES, (48, 48), 8)
    _, plain = evaluation.predict_probabilities(model, dataset)
    _, averaged = evaluation.predict_probabilities(model, dataset, tta=True)
    images = next(iter(dataset))[0].numpy()
    flipped = np.asarray(model(images[:, :, ::-1], training=False))[:, 0]
    np.testing.assert_allclose(averaged, (plain + flipped) / 2, atol=1e-5)


def test_confident_errors_pick_the_worst_mistakes():
    frame = pd.DataFrame({"path": list("abcdef"), "label": ["T", "T", "T", "H", "H", "H"]})
    y = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.1, 0.3, 0.8, 0.6, 0.2])
    misses = evaluation.confident_errors(frame, y, scores, positive=1, threshold=0.5, kind="false negative")
    assert misses["path"].tolist() == ["b", "c"]
    alarms = evaluation.confident_errors(frame, y, scores, positive=1, threshold=0.5, kind="false positive")
    assert alarms["path"].tolist() == ["d", "e"]
    with pytest.raises(ValueError, match="kind='wrong'"):
        evaluation.confident_errors(frame, y, scores, positive=1, threshold=0.5, kind="wrong")


def test_copies_of_one_image_are_shown_once_among_the_errors():
    frame = pd.DataFrame({"path": list("abcd"), "label": ["H"] * 4, "group": ["g1", "g1", "g2", "g3"]})
    alarms = evaluation.confident_errors(
        frame,
        np.zeros(4, int),
        np.array([0.9, 0.8, 0.7, 0.2]),
        positive=1,
        threshold=0.5,
        kind="false positive",
    )
    assert alarms["path"].tolist() == ["a", "c"]


def test_split_table_counts_images_and_groups_per_split():
    frame = pd.DataFrame(
        {
            "label": ["Healthy", "Tumor", "Tumor", "Healthy", "Tumor"],
            "split": ["train", "train", "train", "val", "test"],
            "group": ["a", "b", "b", "c", "d"],
        }
    )
    table = report.split_markdown(frame)
    assert "| Healthy | 1 | 1 | 0 |" in table
    assert "| Tumor | 2 | 0 | 1 |" in table
    assert "| *distinct groups* | 2 | 1 | 1 |" in table


def test_a_card_shown_inside_a_chapter_has_its_headings_demoted():
    card = report.model_card({"class_names": CLASS_NAMES}, {"Limits": "few"}, title="x")
    shown = report.demote_headings(card, 2)
    assert shown.startswith("### Model card: x")
    assert "\n#### Limits\n" in shown and "\n## " not in shown
    assert report.NOT_A_DEVICE in shown


def test_gradcam_overlays_are_drawn_for_saved_model(saved_model, synthetic_dir):
    import matplotlib

    matplotlib.use("Agg")
    from medclass import gradcam

    model, info = saved_models.load_model(saved_model)
    frame = data.load_dataset("brain_mri", synthetic_dir).head(3)
    images = gradcam.load_images(frame["path"], info["image_size"])
    assert images.shape == (3, 48, 48, 3) and images.dtype == np.float32
    figure = gradcam.plot_overlays(model, frame, CLASS_NAMES, info["image_size"], class_index=1)
    assert len(figure.axes) == 6
    titles = [axis.get_title() for axis in figure.axes[:3]]
    assert all(title.startswith("true ") and "\nP(Tumor)=" in title for title in titles)


def test_the_kaggle_layout_is_read_without_its_masks(synthetic_dir):
    """The synthetic set keeps masks/Training/glioma/...png beside Training/glioma/...jpg: only
    the scans are images to classify."""
    frame = report.load_folder(synthetic_dir, CLASS_NAMES)
    assert len(frame) == len(data.load_dataset("brain_mri", synthetic_dir))
    assert not frame["path"].str.contains("/masks/").any()
