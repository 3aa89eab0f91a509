"""model.json and evaluation.json: broken, hand-edited or stale files are refused with what to do
(issue: bad runs, bad files and bad sidecars never pass silently)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from medclass import records, serving
from tests.conftest import write_evaluation

GOOD_EVALUATION = {
    "tta": True,
    "temperature": 1.2,
    "operating_class": "Tumor",
    "operating_threshold": 0.3,
    "target_sensitivity": 0.98,
}


@pytest.fixture
def model_dir(saved_model, tmp_path) -> Path:
    folder = Path(shutil.copytree(saved_model, tmp_path / "brain_mri", ignore=shutil.ignore_patterns("work")))
    write_evaluation(folder, GOOD_EVALUATION)
    return folder


def edit(path: Path, **changes) -> None:
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


def test_the_records_written_by_a_run_are_read_back(model_dir):
    bundle = serving.load_bundle(model_dir)
    assert bundle.class_names == ["Healthy", "Tumor"]
    assert bundle.temperature == 1.2 and bundle.evaluation["schema"] == records.SCHEMA
    assert json.loads((model_dir / "model.json").read_text())["schema"] == records.SCHEMA


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"class_names": ["Tumor", "Healthy"]}, "another order"),
        ({"class_names": "HT"}, "two or more distinct names"),
        ({"class_names": ["Tumor", "Tumor"]}, "two or more distinct names"),
        ({"image_size": [160]}, "two whole numbers from 1 to 2048"),
        ({"image_size": ["160", "160"]}, "two whole numbers from 1 to 2048"),
        ({"image_size": [0, 160]}, "two whole numbers from 1 to 2048"),
        ({"schema": records.SCHEMA + 1}, "Update medclass"),
        ({"schema": "1"}, "schema must be a whole number from 1, not '1'"),
        ({"schema": 0}, "schema must be a whole number from 1"),
    ],
)
@pytest.mark.case(
    3,
    'model.json with swapped class names, class_names "HT" or repeated, image_size [160], ["160", "160"] '
    'or [0, 160], a newer schema, schema "1" or 0',
    "refused, naming model.json and what to do (a schema that is not a number is named as such, not "
    "'update medclass')",
)
def test_a_broken_model_json_is_refused_with_what_to_do(model_dir, changes, message):
    edit(model_dir / "model.json", **changes)
    with pytest.raises(serving.ModelUnavailable, match=message) as error:
        serving.load_bundle(model_dir)
    assert "model.json" in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"temperature": -1}, "lies outside 0.05 to 20"),
        ({"temperature": 0}, "lies outside 0.05 to 20"),
        ({"temperature": 1e-4}, "lies outside 0.05 to 20"),
        ({"temperature": 1e6}, "lies outside 0.05 to 20"),
        ({"temperature": "abc"}, "must be a number"),
        ({"temperature": None}, "must be a number"),
        ({"operating_threshold": 1.5}, "between 0.001 and 1"),
        ({"operating_threshold": 0}, "between 0.001 and 1"),
        ({"operating_threshold": 1e-6}, "between 0.001 and 1"),
        ({"test": {"accuracy": "high"}}, "test must map metric names to numbers"),
        ({"test": [0.9]}, "test must map metric names to numbers"),
        ({"operating_threshold": None}, "must be a number"),
        ({"operating_class": "glioma"}, "not one of the model's classes"),
        ({"tta": "yes"}, "true or false"),
        ({"model_sha256": "0123456789abcdef"}, "another model.keras"),
        ({"model_sha256": None}, "does not say which model.keras"),
    ],
)
@pytest.mark.case(
    3,
    'evaluation.json with temperature -1, 0, 1e-4, 1e6, "abc" or missing; threshold 1.5, 0, 1e-6 or '
    'missing; test metrics that are text or a list; an unknown operating class; tta "yes"; another '
    "model's digest or none",
    "refused, naming evaluation.json and the evaluation chapter",
)
def test_a_broken_or_stale_evaluation_json_is_refused_with_what_to_do(model_dir, changes, message):
    edit(model_dir / "evaluation.json", **changes)
    with pytest.raises(serving.ModelUnavailable, match=message) as error:
        serving.load_bundle(model_dir)
    assert "evaluation.json" in str(error.value) and "evaluation chapter" in str(error.value)


def test_a_threshold_of_one_from_saturated_validation_scores_is_accepted(model_dir):
    edit(model_dir / "evaluation.json", operating_threshold=1.0)
    assert serving.load_bundle(model_dir).evaluation["operating_threshold"] == 1.0


@pytest.mark.case(3, "evaluation.json holding a list instead of an object", "refused: 'holds a list'")
def test_an_evaluation_json_that_is_a_list_is_refused(model_dir):
    (model_dir / "evaluation.json").write_text("[1, 2]")
    with pytest.raises(serving.ModelUnavailable, match="holds a list"):
        serving.load_bundle(model_dir)


@pytest.mark.case(
    3,
    "a model trained again, served beside the old evaluation.json",
    "refused: evaluation.json describes another model.keras (SHA-256 recorded and compared)",
)
def test_a_model_trained_again_is_not_served_with_the_old_calibration(model_dir):
    (model_dir / "model.keras").write_bytes((model_dir / "model.keras").read_bytes() + b"\0")
    with pytest.raises(serving.ModelUnavailable, match="another model.keras"):
        serving.load_bundle(model_dir)


@pytest.mark.case(
    3, "an evaluation whose numbers are impossible", "never written; the previous evaluation.json kept"
)
def test_an_evaluation_with_impossible_numbers_is_never_written(model_dir):
    before = (model_dir / "evaluation.json").read_text()
    from medclass import report

    with pytest.raises(records.RecordError, match="lies outside 0.05 to 20"):
        report.record_evaluation(
            model_dir, model_dir.parent, {"class_names": ["Healthy", "Tumor"]},
            {**GOOD_EVALUATION, "temperature": -1.0}, operating_name="operating",
        )  # fmt: skip
    assert (model_dir / "evaluation.json").read_text() == before


@pytest.mark.case(
    3,
    "evaluation.json edited while the app runs",
    "the app's cache key changes, so it reloads the calibration",
)
def test_the_app_reloads_when_a_sidecar_changes(model_dir):
    before = serving.files_modified(model_dir)
    stat = (model_dir / "evaluation.json").stat()
    edit(model_dir / "evaluation.json", temperature=2.0)  # the same size as 1.2
    os.utime(model_dir / "evaluation.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert serving.files_modified(model_dir) != before
