"""The dataset registry: every dataset is complete, and what asks the registry gets its answer."""

import pytest

from medclass import data, datasets, report, serving
from medclass.datasets import ham10000


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    """One folder for every dataset's synthetic copy, as the demo profile lays them out (the
    synthetic Br35H copies the synthetic brain-tumor-mri beside it)."""
    return tmp_path_factory.mktemp("datasets")


# Writing the demo's brain phantoms (416, and Br35H's 240 more) takes tens of seconds.
SLOW_TO_WRITE = {"brain_mri", "br35h"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=[pytest.mark.slow] * (name in SLOW_TO_WRITE)) for name in datasets.names()],
)
def test_each_dataset_is_complete_and_its_synthetic_copy_loads_as_it_says(name, synthetic_root):
    dataset = datasets.get(name)
    assert dataset.citation and dataset.description and dataset.folder
    assert dataset.kaggle_slug or dataset.source_url, "a user must be told where to get it"
    assert set(dataset.folder_labels.values()) <= set(dataset.class_names)
    assert set(dataset.class_names) <= set(dataset.class_definitions)
    assert all(len(text) > 20 for text in dataset.class_definitions.values())
    assert set(dataset.risk_classes) <= set(dataset.class_definitions)
    frame = data.load_dataset(name, synthetic_root, synthetic_data=True)
    assert frame.attrs["synthetic"]
    assert tuple(sorted(frame["label"].unique())) == dataset.class_names
    assert frame["path"].map(lambda path: path.startswith(str(synthetic_root / dataset.folder))).all()


def test_an_unknown_dataset_is_refused_with_the_names_that_exist():
    with pytest.raises(ValueError, match="choose one of .*brain_mri.*ph2"):
        datasets.get("isic2019")


def test_a_dataset_not_on_kaggle_says_where_to_get_it(tmp_path):
    with pytest.raises(RuntimeError, match="not on Kaggle.*fc.up.pt.*data_dir="):
        data.download(datasets.get("ph2"))
    with pytest.raises(FileNotFoundError, match="download it from https://www.fc.up.pt.*not on Kaggle"):
        data.resolve_data_dir("ph2", tmp_path / "missing")


def test_the_folders_a_model_reads_come_from_the_datasets_of_its_classes():
    skin = datasets.folder_labels_for(ham10000.DATASET.class_names)
    assert skin["melanoma"] == "mel" and skin["common_nevus"] == "nv"
    brain = datasets.folder_labels_for(["Healthy", "Tumor"])
    assert brain["glioma"] == "Tumor" and brain["no"] == "Healthy"
    assert "melanoma" not in brain and "glioma" not in skin


def test_the_external_report_reads_ph2s_folders_without_a_mapping(tmp_path):
    root = data.resolve_data_dir("ph2", tmp_path, synthetic_data=True)
    frame = report.load_folder(root, list(ham10000.DATASET.class_names))
    assert frame["label"].value_counts().to_dict() == {"nv": 32, "mel": 8}
    assert not frame.attrs["ignored_folders"]


def test_the_risk_score_adds_up_the_registrys_risk_classes():
    assert serving.risk_classes(["Healthy", "Tumor"]) == ["Tumor"]
    assert serving.risk_classes(list(ham10000.DATASET.class_names)) == ["akiec", "bcc", "mel"]
