"""Splits: proportions, stratification, groups kept on one side, reproducibility, manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medclass import splits


def toy_frame(n=200, duplicate_every=10):
    rows = []
    for index in range(n):
        label = "Tumor" if index % 3 else "Healthy"
        group = f"g{index - index % 2}" if index % duplicate_every < 2 else f"g{index}"
        rows.append({"path": f"/data/{index:04d}.jpg", "label": label, "group": group})
    return pd.DataFrame(rows)


def test_split_proportions_and_stratification():
    frame = splits.split_frame(toy_frame(), seed=1)
    shares = frame["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.8, abs=0.03)
    assert shares["val"] == pytest.approx(0.1, abs=0.03)
    assert shares["test"] == pytest.approx(0.1, abs=0.03)
    tumor_share = frame.groupby("split")["label"].apply(lambda labels: (labels == "Tumor").mean())
    assert tumor_share.max() - tumor_share.min() < 0.1
    splits.check_split(frame)


def test_groups_never_cross_splits():
    frame = splits.split_frame(toy_frame(duplicate_every=3), seed=5)
    assert frame.groupby("group")["split"].nunique().max() == 1


@pytest.mark.case("kept", "the same data in another row order, the same seed", "the same split")
def test_same_seed_same_split_other_seed_other_split():
    first = splits.split_frame(toy_frame().sample(frac=1, random_state=0), seed=3)
    again = splits.split_frame(toy_frame(), seed=3)
    other = splits.split_frame(toy_frame(), seed=4)
    assert first["split"].tolist() == again["split"].tolist()
    assert first["split"].tolist() != other["split"].tolist()


@pytest.mark.case(
    4, "a duplicate group on both sides of a split", "check_split raises: groups 'span several splits'"
)
def test_check_split_catches_a_leak():
    frame = splits.split_frame(toy_frame(), seed=1)
    leaked = frame.copy()
    leaked.loc[leaked.index[0], "group"] = leaked.loc[leaked["split"] == "test", "group"].iloc[0]
    with pytest.raises(ValueError, match="span several splits"):
        splits.check_split(leaked)


def test_too_few_images_and_bad_fractions():
    with pytest.raises(ValueError, match="rarest class has 3"):
        splits.split_frame(toy_frame(n=9))
    with pytest.raises(ValueError, match="test_fraction=0.7"):
        splits.split_frame(toy_frame(), test_fraction=0.7)
    with pytest.raises(ValueError, match="max_images=3"):
        splits.cap_images(toy_frame(), 3, seed=0)


def test_cap_keeps_class_balance_and_is_reproducible():
    frame = toy_frame(n=300)
    capped = splits.cap_images(frame, 60, seed=0)
    assert len(capped) == 60
    assert (capped["label"] == "Healthy").mean() == pytest.approx(
        (frame["label"] == "Healthy").mean(), abs=0.02
    )
    assert capped.equals(splits.cap_images(frame, 60, seed=0))
    assert len(splits.cap_images(frame, None, seed=0)) == 300


def with_files(frame, folder):
    """``frame`` with its images as (empty) files in two sibling dataset folders under ``folder``."""
    paths = []
    for index, name in enumerate(frame["path"]):
        path = folder / ("brain" if index % 2 else "other") / "class" / Path(name).name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        paths.append(str(path))
    return frame.assign(path=paths)


def test_manifest_round_trip_with_sidecar(tmp_path):
    frame = with_files(splits.split_frame(toy_frame(), seed=1), tmp_path / "data")
    frame.attrs.update({"synthetic": True, "data_dir": "/data"})
    path = splits.write_manifest(frame, tmp_path / "run" / "manifest.csv")
    back = splits.read_manifest(path)
    assert back[["path", "label", "group", "split"]].equals(frame[["path", "label", "group", "split"]])
    assert back.attrs["synthetic"] is True and back.attrs["images"] == 200
    assert len(splits.manifest_hash(path)) == 16
    with pytest.raises(FileNotFoundError, match="brain_01_data"):
        splits.read_manifest(tmp_path / "elsewhere.csv")


@pytest.mark.case(
    10,
    "the data folder moved after a split was written",
    "the manifest holds relative paths: reading says where the data was and how to fix it; the data "
    "chapter run again writes the same manifest and hash, so training resumes",
)
def test_moving_the_data_keeps_the_manifest_and_its_hash(tmp_path):
    frame = with_files(splits.split_frame(toy_frame(), seed=1), tmp_path / "data")
    path = splits.write_manifest(frame, tmp_path / "run" / "manifest.csv")
    written, digest = path.read_text(), splits.manifest_hash(path)
    assert str(tmp_path) not in written  # no absolute path in the manifest itself
    (tmp_path / "data").rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match="does not exist now.*data_dir"):
        splits.read_manifest(path)
    moved = frame.assign(path=[value.replace("/data/", "/moved/") for value in frame["path"]])
    splits.write_manifest(moved, path)  # the data chapter run again on the moved folder
    assert path.read_text() == written and splits.manifest_hash(path) == digest
    assert splits.read_manifest(path)["path"].tolist() == moved["path"].tolist()


def written_manifest(tmp_path):
    frame = with_files(splits.split_frame(toy_frame(), seed=1), tmp_path / "data")
    return splits.write_manifest(frame, tmp_path / "run" / "manifest.csv")


def edit_rows(path, change):
    """Edit a manifest's CSV as a hand or a script would, and keep its sidecar in step with it,
    so that what is refused is the rows, not the digest."""
    frame = pd.read_csv(path)
    change(frame)
    frame.to_csv(path, index=False)
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["manifest_sha256"] = splits.manifest_hash(path)
    sidecar.write_text(json.dumps(record))


def unchanged(frame):
    pass


def tset(frame):
    frame["split"] = frame["split"].replace("test", "tset")


def copy_a_test_row_into_train(frame):
    row = frame[frame["split"] == "test"].iloc[[0]].assign(split="train")
    frame.loc[len(frame)] = row.iloc[0]


def one_of_a_pair_moved(frame):
    pair = frame["group"][frame["group"].duplicated()].iloc[0]
    first = frame.index[frame["group"] == pair][0]
    frame.loc[first, "split"] = "test" if frame.loc[first, "split"] != "test" else "train"


def dot_dot_path(frame):
    frame.loc[0, "path"] = "../../../../etc/hostname"


def absolute_path(frame):
    frame.loc[0, "path"] = "/etc/hostname"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (unchanged, None),
        (tset, "unknown split.*'tset'"),
        (copy_a_test_row_into_train, "listed more than once"),
        (one_of_a_pair_moved, "group.* in more than one split.*leak"),
        (dot_dot_path, "lead outside the data folder"),
        (absolute_path, "lead outside the data folder"),
    ],
    ids=lambda value: getattr(value, "__name__", "")[:30],
)
@pytest.mark.case(
    "32.4",
    "a manifest edited by hand: a split spelled 'tset', a row twice, a test image moved into train, "
    "a path to ../../../../etc/hostname or /etc/hostname",
    "refused when read (by every chapter), naming the rows and saying to run the data chapter again",
)
def test_a_manifest_that_does_not_hold_together_is_refused(tmp_path, change, message):
    path = written_manifest(tmp_path)
    if message is None:
        assert len(splits.read_manifest(path)) == 200
        return
    edit_rows(path, change)
    with pytest.raises(splits.ManifestError, match=message) as error:
        splits.read_manifest(path)
    assert "data chapter" in str(error.value)


@pytest.mark.case(
    "32.4",
    "a manifest whose CSV is not the one its sidecar describes (a write cut short between the two, "
    "or an edit)",
    "refused: the sidecar, written after the CSV, records the CSV's digest",
)
def test_a_manifest_and_a_sidecar_from_two_writes_are_refused(tmp_path):
    path = written_manifest(tmp_path)
    path.write_text(path.read_text().replace(",test", ",val", 1))
    with pytest.raises(splits.ManifestError, match="not the manifest manifest.json describes"):
        splits.read_manifest(path)


@pytest.mark.case(
    "32.4",
    "two processes writing the same manifest at once",
    "each writes its own temporary file and renames it: the manifest is one of theirs, whole",
)
def test_two_writers_of_one_manifest_leave_a_whole_one(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    frame = with_files(splits.split_frame(toy_frame(), seed=1), tmp_path / "data")
    target = tmp_path / "run" / "manifest.csv"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: splits.write_manifest(frame, target), range(8)))
    assert len(splits.read_manifest(target)) == 200
    assert sorted(path.name for path in target.parent.iterdir()) == ["manifest.csv", "manifest.json"]


@pytest.mark.parametrize("code", ["ENOSPC", "EFBIG"])
@pytest.mark.case(
    "32.7",
    "a full disk or a file-size limit (Errno 28, Errno 27) while a manifest or sidecar is written",
    "an OSError naming the file and what to free; the manifest that was there is kept",
)
def test_a_full_disk_while_a_manifest_is_written_is_named(tmp_path, monkeypatch, code):
    import errno
    import os as os_module

    path = written_manifest(tmp_path)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(getattr(errno, code), os_module.strerror(getattr(errno, code)))

    monkeypatch.setattr(os_module, "replace", full)
    frame = with_files(splits.split_frame(toy_frame(), seed=2), tmp_path / "data")
    with pytest.raises(OSError, match="manifest.csv could not be written; free space under"):
        splits.write_manifest(frame, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.csv", "manifest.json"]


@pytest.mark.slow
def test_real_data_split_has_no_cross_split_duplicates(real_brain_frame):
    frame = splits.split_frame(real_brain_frame, seed=42)
    splits.check_split(frame)
    assert frame.groupby("group")["split"].nunique().max() == 1
    assert frame["split"].value_counts(normalize=True)["test"] == pytest.approx(0.1, abs=0.01)
    # The dataset's own Training/Testing folders do leak: some duplicate groups span both.
    spans = real_brain_frame.groupby("group")["source_split"].nunique()
    assert (spans > 1).sum() > 0


@pytest.mark.slow
def test_real_ham10000_split_keeps_lesions_together():
    from medclass import data
    from tests.conftest import REAL_HAM

    if not REAL_HAM.is_dir():
        pytest.skip(f"real data not found at {REAL_HAM} (see ../shared/data/README.md)")
    frame = splits.split_frame(data.load_dataset("ham10000", REAL_HAM), 0.15, 0.15, seed=42)
    splits.check_split(frame)
    assert frame.groupby("group")["split"].nunique().max() == 1
    shares = frame["split"].value_counts(normalize=True)
    assert shares["test"] == pytest.approx(1 / 7, abs=0.01) and shares["val"] == pytest.approx(
        1 / 7, abs=0.01
    )
    again = splits.split_frame(data.load_dataset("ham10000", REAL_HAM), 0.15, 0.15, seed=42)
    assert again["split"].tolist() == frame["split"].tolist(), "the same seed gives the same split"
