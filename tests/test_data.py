"""Loading images into a DataFrame: layouts, synthetic data, bad input, the real dataset."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from medclass import data, synthetic, synthetic_skin
from tests.conftest import REAL_HAM, damaged_jpegs, write_image


def test_phantoms_are_deterministic_and_masks_mark_the_mass():
    first = synthetic.make_phantom(np.random.default_rng(7), tumor=True, size=128)
    again = synthetic.make_phantom(np.random.default_rng(7), tumor=True, size=128)
    healthy = synthetic.make_phantom(np.random.default_rng(7), tumor=False, size=128)
    assert np.array_equal(first.image, again.image)
    assert first.mask.sum() > 20 and not healthy.mask.any()
    inside = first.image[first.mask].astype(float).mean()
    ring = first.image[~first.mask & (first.image > 40)].astype(float).mean()
    assert abs(inside - ring) > 10, "the planted mass must differ in intensity from the tissue"


def test_synthetic_set_is_written_in_the_kaggle_layout(synthetic_dir):
    frame = data.load_dataset("brain_mri", synthetic_dir)
    assert frame.attrs["synthetic"]
    assert set(frame["source_split"]) == {"Training", "Testing"}
    assert set(frame["source_class"]) == {"notumor", "glioma", "meningioma", "pituitary"}
    planted = frame["path"].str.contains("copy_")
    assert planted.sum() == 2, "4% of 60 images reappear as copies"
    assert frame.loc[~planted, "label"].value_counts().to_dict() == {"Healthy": 30, "Tumor": 30}
    tumor = frame[frame["label"] == "Tumor"].iloc[0]
    assert synthetic.read_mask(synthetic_dir, tumor["path"]).any()


@pytest.mark.slow
def test_synthetic_option_writes_then_reuses(tmp_path):
    frame = data.load_dataset("brain_mri", tmp_path, synthetic_data=True)
    root = tmp_path / "brain-tumor-mri"
    stamp = (root / "SYNTHETIC.txt").stat().st_mtime_ns
    again = data.load_dataset("brain_mri", root, synthetic_data=True)  # the folder itself works too
    assert len(frame) == len(again) == 416
    assert (root / "SYNTHETIC.txt").stat().st_mtime_ns == stamp


@pytest.mark.case(
    "32.8", "synthetic=True with data_dir=None", "the synthetic images go to synthetic_data/, said"
)
def test_synthetic_alone_writes_to_a_folder_of_its_own(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    frame = data.load_dataset("brain_mri", None, synthetic_data=True)
    assert (tmp_path / "synthetic_data" / "brain-tumor-mri" / "SYNTHETIC.txt").exists()
    assert len(frame) == 416 and "synthetic_data" in capsys.readouterr().out


@pytest.mark.case(
    "32.2",
    "images in a subfolder of a class folder (Tumor/patient1/*.jpg), a class folder named 'Tumor ' "
    "with a trailing space, top-level class folders beside Training/, a folder that names no class "
    "(meningioma_tumor/), a folder symlinked to itself",
    "each read as its class, or listed among the skipped files with why; nothing twice, nothing "
    "dropped silently; medclass.report reads folders the same way",
)
def test_every_image_under_the_data_folder_is_read_or_reported(healthy_tumor_dir):
    from medclass import report

    write_image(healthy_tumor_dir / "Tumor" / "patient1" / "deep.jpg", seed=7)
    write_image(healthy_tumor_dir / "Healthy " / "spaced.jpg", seed=8)
    write_image(healthy_tumor_dir / "Training" / "notumor" / "kaggle.jpg", seed=9)
    write_image(healthy_tumor_dir / "meningioma_tumor" / "unknown.jpg", seed=10)
    (healthy_tumor_dir / "Tumor" / "loop").symlink_to(healthy_tumor_dir / "Tumor")
    frame = data.load_dataset("brain_mri", healthy_tumor_dir)
    by_name = dict(zip(frame["path"].map(lambda path: os.path.basename(path)), frame["label"], strict=True))
    assert len(frame) == 27 and frame["path"].is_unique
    assert by_name["deep.jpg"] == "Tumor" and by_name["spaced.jpg"] == by_name["kaggle.jpg"] == "Healthy"
    assert frame.loc[frame["path"].str.endswith("kaggle.jpg"), "source_split"].item() == "Training"
    skipped = data.report_skipped(frame)
    assert "meningioma_tumor (1 image(s); its name is no class)" in skipped and "rename it" in skipped
    external = report.load_folder(healthy_tumor_dir, ["Healthy", "Tumor"])
    assert sorted(external["path"]) == sorted(frame["path"])
    assert any("meningioma_tumor" in folder for folder in external.attrs["ignored_folders"])


def test_plain_healthy_tumor_layout(healthy_tumor_dir):
    frame = data.load_dataset("brain_mri", healthy_tumor_dir)
    assert len(frame) == 24 and set(frame["label"]) == {"Healthy", "Tumor"}
    assert not frame.attrs["synthetic"]
    assert data.report_skipped(frame).startswith("No files skipped")


def test_registry_subfolder_is_found(tmp_path, healthy_tumor_dir):
    (tmp_path / "parent").mkdir()
    (tmp_path / "parent" / "brain-tumor-mri").symlink_to(healthy_tumor_dir)
    assert len(data.load_dataset("brain_mri", tmp_path / "parent")) == 24


@pytest.mark.case("kept", "data_dir that does not exist", "names the folder and data_dir")
def test_missing_folder_names_it_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*data_dir"):
        data.load_dataset("brain_mri", tmp_path / "nowhere")


def test_folder_without_class_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="No class folders"):
        data.load_dataset("brain_mri", tmp_path)


@pytest.mark.case("kept", "a class folder with no usable image", "refused, naming the class")
def test_empty_class_folder_is_an_error_naming_the_class(healthy_tumor_dir):
    for path in (healthy_tumor_dir / "Tumor").iterdir():
        path.unlink()
    with pytest.raises(ValueError, match="No usable Tumor images"):
        data.load_dataset("brain_mri", healthy_tumor_dir)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
        data.load_dataset("mnist", ".")


@pytest.mark.case(
    "kept",
    "a truncated JPEG, text named .jpg, a README, an 8-px PNG, a TIFF, a TIFF named .jpg",
    "each skipped with its reason; the load goes on",
)
def test_bad_files_are_skipped_with_a_reason(healthy_tumor_dir):
    tumor = healthy_tumor_dir / "Tumor"
    truncated = write_image(tumor / "truncated.jpg", mode="RGB", size=(128, 128), seed=5)
    truncated.write_bytes(truncated.read_bytes()[:600])
    (tumor / "notes.jpg").write_text("this is not an image")
    (tumor / "README.txt").write_text("not an image either")
    write_image(tumor / "tiny.png", size=(8, 8), fmt="PNG")
    Image.new("RGB", (64, 64)).save(tumor / "scan.tif", "TIFF")
    Image.new("RGB", (64, 64)).save(tumor / "disguised.jpg", "TIFF")

    frame = data.load_dataset("brain_mri", healthy_tumor_dir)
    skipped = frame.attrs["skipped"].set_index(frame.attrs["skipped"]["path"].str.rsplit("/", n=1).str[-1])
    assert set(skipped.index) == {
        "truncated.jpg",
        "notes.jpg",
        "README.txt",
        "tiny.png",
        "scan.tif",
        "disguised.jpg",
    }
    assert "not a readable image" in skipped.loc["truncated.jpg", "reason"]
    assert "not a readable image" in skipped.loc["notes.jpg", "reason"]
    assert "too small" in skipped.loc["tiny.png", "reason"]
    assert "TIFF files are not supported" in skipped.loc["disguised.jpg", "reason"]
    assert len(frame) == 24
    report = data.report_skipped(frame)
    assert report.startswith("Skipped 6 file(s)") and "notes.jpg" in report


@pytest.mark.case(
    5,
    "JPEGs with damaged compressed data: bytes before the end marker, a cut scan, 40 with random byte "
    "changes",
    "skipped with libjpeg's words; at least 20 of the 40 caught (29 measured), the rest decode cleanly "
    "to libjpeg too (JPEG has no checksum)",
)
def test_a_jpeg_with_damaged_compressed_data_is_skipped_not_trained_on_as_garbled_pixels(healthy_tumor_dir):
    damaged = damaged_jpegs()
    for name, content in damaged.items():
        (healthy_tumor_dir / "Tumor" / name).write_bytes(content)
    frame = data.load_dataset("brain_mri", healthy_tumor_dir)
    skipped = frame.attrs["skipped"]
    reasons = dict(zip(skipped["path"].str.rsplit("/", n=1).str[-1], skipped["reason"], strict=True))
    assert "extraneous bytes before marker" in reasons["extra_bytes.jpg"]
    assert "damaged JPEG data" in reasons["cut_scan.jpg"]
    changed = {name: reason for name, reason in reasons.items() if name.startswith("changed_")}
    # JPEG has no checksum: a changed byte that keeps the stream valid is caught by no decoder.
    # Of these 40, libjpeg or Pillow notices 29 (measured); the rest decode as garbled pixels.
    assert len(changed) >= 20, changed
    assert all("damaged JPEG data" in r or "not a readable image" in r for r in changed.values())
    assert len(frame) == 24 + len(damaged) - len(reasons)


def test_odd_but_valid_images_are_kept(healthy_tumor_dir):
    tumor = healthy_tumor_dir / "Tumor"
    write_image(tumor / "gray.png", mode="L", fmt="PNG")
    write_image(tumor / "palette.png", mode="P", fmt="PNG")
    write_image(tumor / "alpha.png", mode="RGBA", fmt="PNG")
    write_image(tumor / "png_named.jpg", mode="RGB", fmt="PNG")
    frame = data.load_dataset("brain_mri", healthy_tumor_dir)
    assert len(frame) == 28 and frame.attrs["skipped"].empty


def test_byte_identical_files_share_a_group(healthy_tumor_dir):
    source = healthy_tumor_dir / "Tumor" / "Tumor_0.jpg"
    (healthy_tumor_dir / "Tumor" / "copy.jpg").write_bytes(source.read_bytes())
    frame = data.load_dataset("brain_mri", healthy_tumor_dir).set_index("path")
    assert (
        frame.loc[str(source.resolve()), "group"]
        == frame.loc[str((healthy_tumor_dir / "Tumor" / "copy.jpg").resolve()), "group"]
    )
    assert frame["group"].nunique() == 24


@pytest.mark.parametrize(
    "dataset, slug",
    [
        ("brain_mri", "masoudnickparvar/brain-tumor-mri-dataset"),
        ("ham10000", "kmader/skin-cancer-mnist-ham10000"),
    ],
)
def test_failed_download_says_how_to_fix(monkeypatch, dataset, slug):
    import kagglehub

    def offline(slug):
        raise ConnectionError("no network")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    monkeypatch.delenv(data.DATA_DIR_VARIABLE, raising=False)
    with pytest.raises(
        RuntimeError, match=f"{slug}.*secret KAGGLE_API_TOKEN.*~/.kaggle/access_token.*data_dir"
    ):
        data.load_dataset(dataset, None)


def test_environment_variable_is_used(monkeypatch, healthy_tumor_dir):
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(healthy_tumor_dir))
    assert len(data.load_dataset("brain_mri", None)) == 24


@pytest.mark.slow
def test_real_brain_mri_dataset(real_brain_frame):
    frame = real_brain_frame
    skipped = frame.attrs["skipped"]
    assert len(frame) + len(skipped) == 7023
    counts = frame["label"].value_counts()
    assert counts["Healthy"] + counts["Tumor"] == len(frame)
    assert counts["Healthy"] >= 1990 and counts["Tumor"] >= 5000
    # Byte-identical originals exist (194 groups in the upstream data).
    assert (frame.groupby("group").size() > 1).sum() >= 150


def test_synthetic_ham10000_loads_with_lesion_groups(tmp_path):
    frame = data.load_dataset("ham10000", tmp_path / "skin", synthetic_data=True)
    assert frame.attrs["synthetic"]
    assert set(frame["label"]) == set(data.dataset_info("ham10000").class_names)
    assert (frame["group"].str.startswith("HAM_")).all()
    assert frame.groupby("group")["label"].nunique().max() == 1, "one diagnosis per lesion"
    assert frame.groupby("group").size().max() > 1, "some lesions have several images"
    assert frame.loc[frame["label"] == "mel", "diagnosis"].iloc[0] == "Melanoma"
    assert frame["path"].str.contains("HAM10000_images_part_1").any()


def test_ham10000_missing_image_and_metadata(tmp_path):
    root = synthetic_skin.write_synthetic_ham10000(tmp_path / "skin", n_lesions=20, seed=1)
    victim = next((root / "HAM10000_images_part_1").glob("*.jpg"))
    victim.unlink()
    frame = data.load_dataset("ham10000", root)
    assert frame.attrs["skipped"]["reason"].tolist() == ["image file not found under data_dir"]
    (root / "HAM10000_metadata.csv").unlink()
    with pytest.raises(FileNotFoundError, match="HAM10000_metadata.csv not found"):
        data.load_dataset("ham10000", root)


@pytest.mark.case(
    5, "a decompression bomb among the images", "skipped with 'too many pixels', the load goes on"
)
@pytest.mark.case(
    5,
    "a file name with a byte that is not UTF-8",
    "skipped with 'not valid UTF-8; rename it', the skip list can be written",
)
def test_a_decompression_bomb_or_an_undecodable_name_is_skipped_not_fatal(healthy_tumor_dir, monkeypatch):
    tumor = healthy_tumor_dir / "Tumor"
    write_image(tumor / "huge.png", size=(100, 100), fmt="PNG")
    write_image(tumor / "bad_name.jpg", size=(64, 64))
    undecodable = os.fsencode(tumor) + b"/scan\xff.jpg"  # a byte that is not UTF-8
    os.rename(os.fsencode(tumor / "bad_name.jpg"), undecodable)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4500)  # 100x100 is then a "bomb"; 64x64 is not
    frame = data.load_dataset("brain_mri", healthy_tumor_dir)
    reasons = dict(zip(frame.attrs["skipped"]["path"], frame.attrs["skipped"]["reason"], strict=True))
    assert "too many pixels" in reasons[str(tumor / "huge.png")]
    assert reasons[str(tumor / "scan\ufffd.jpg")] == "the file name is not valid UTF-8; rename it"
    assert len(frame) == 24
    frame.attrs["skipped"].to_csv(healthy_tumor_dir / "skipped.csv")  # every name can be written


@pytest.mark.case(
    "32.7",
    "HAM10000 metadata that is empty, Latin-1 text, or lists image_ids ending in .jpg",
    "refused naming the file and the fix (not a pandas error, not 'check data_dir')",
)
def test_metadata_that_cannot_be_read_names_the_file_and_the_fix(tmp_path):
    root = synthetic_skin.write_synthetic_ham10000(tmp_path / "skin", n_lesions=20, seed=1)
    metadata = root / "HAM10000_metadata.csv"
    text = metadata.read_text()
    metadata.write_text("")
    with pytest.raises(ValueError, match="HAM10000_metadata.csv is empty"):
        data.load_dataset("ham10000", root)
    metadata.write_bytes((text + "HAM_9,ISIC_9,nv,histo,45.0,male,Zürich\n").encode("latin-1"))
    with pytest.raises(ValueError, match="HAM10000_metadata.csv is not UTF-8 text .* save it as UTF-8"):
        data.load_dataset("ham10000", root)
    lines = text.splitlines()
    first = lines[1].split(",")
    first[1] += ".jpg"
    metadata.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match=r"image_id 'ISIC_\w+\.jpg' .* ends in a file suffix"):
        data.load_dataset("ham10000", root)


def ham_metadata(tmp_path, extra_rows: str):
    root = synthetic_skin.write_synthetic_ham10000(tmp_path / "skin", n_lesions=20, seed=1)
    with (root / "HAM10000_metadata.csv").open("a") as handle:
        handle.write(extra_rows)
    return root


@pytest.mark.case(
    4,
    "a HAM10000 image_id listed twice with different dx and lesion_id; a row repeated; an empty dx",
    "conflicts and empty cells refused, naming the image or line; exact repeats read once",
)
def test_ham10000_metadata_that_a_split_could_not_trust_is_refused(tmp_path):
    root = synthetic_skin.write_synthetic_ham10000(tmp_path / "skin", n_lesions=20, seed=1)
    metadata = (root / "HAM10000_metadata.csv").read_text().splitlines()
    header, first = metadata[0], metadata[1].split(",")
    columns = header.split(",")
    image_id, lesion_id, dx = (columns.index(name) for name in ("image_id", "lesion_id", "dx"))
    repeated = ",".join(first)
    relabelled = first.copy()
    relabelled[dx] = "mel" if first[dx] != "mel" else "nv"
    relabelled[lesion_id] = "HAM_9999999"
    empty = first.copy()
    empty[dx] = ""

    def load_with(*rows):
        (root / "HAM10000_metadata.csv").write_text("\n".join([*metadata, *rows]) + "\n")
        return data.load_dataset("ham10000", root)

    assert len(load_with(repeated)) == len(metadata) - 1, "a row repeated exactly is read once"
    older = first.copy()
    older[columns.index("age")] = "85.0"
    assert len(load_with(",".join(older))) == len(metadata) - 1, "same label and lesion: read once"
    with pytest.raises(
        ValueError, match=f"more than once with different dx or lesion_id .*{first[image_id]}"
    ):
        load_with(",".join(relabelled))
    with pytest.raises(ValueError, match=f"empty dx on line\\(s\\) {len(metadata) + 1}"):
        load_with(",".join(empty))


@pytest.mark.case(7, "HAM10000 images named .JPG", "found and loaded")
def test_ham10000_images_with_upper_case_suffixes_are_found(tmp_path):
    root = synthetic_skin.write_synthetic_ham10000(tmp_path / "skin", n_lesions=20, seed=1)
    for path in list((root / "HAM10000_images_part_1").glob("*.jpg")):
        path.rename(path.with_suffix(".JPG"))
    frame = data.load_dataset("ham10000", root)
    assert frame.attrs["skipped"].empty and frame["path"].str.endswith(".JPG").any()


@pytest.mark.slow
@pytest.mark.skipif(not REAL_HAM.is_dir(), reason=f"real data not found at {REAL_HAM}")
def test_real_ham10000():
    frame = data.load_dataset("ham10000", REAL_HAM.parent)
    assert len(frame) + len(frame.attrs["skipped"]) == 10015
    assert frame["group"].nunique() == 7470
    assert frame["label"].value_counts()["nv"] == 6705
