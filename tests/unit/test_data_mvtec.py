"""The MVTec AD loader on a tiny tree written in MVTec's exact folder format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import load_split
from bench.data.mvtec import MVTecAD
from bench.errors import DataNotFoundError

NORMAL_VALUE, DEFECT_VALUE = 40, 200
NATIVE = 24


def write_png(path: Path, value: int, rgb: bool, rng: np.random.Generator) -> None:
    """A NATIVE-sized PNG whose pixels sit near ``value`` (so the label can be read back from the pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (NATIVE, NATIVE, 3) if rgb else (NATIVE, NATIVE)
    Image.fromarray((value + rng.integers(-5, 6, size=shape)).astype(np.uint8)).save(path)


def write_mvtec_category(folder: Path, rgb: bool, n_train: int = 5, n_good: int = 3) -> dict[str, int]:
    """train/good, test/good, two defect folders and their ground_truth masks, as MVTec AD ships them."""
    rng = np.random.default_rng(0)
    defects = {"crack": 2, "scratch": 3}
    for i in range(n_train):
        write_png(folder / "train" / "good" / f"{i:03d}.png", NORMAL_VALUE, rgb, rng)
    for i in range(n_good):
        write_png(folder / "test" / "good" / f"{i:03d}.png", NORMAL_VALUE, rgb, rng)
    for defect, count in defects.items():
        for i in range(count):
            write_png(folder / "test" / defect / f"{i:03d}.png", DEFECT_VALUE, rgb, rng)
            mask = np.zeros((NATIVE, NATIVE), dtype=np.uint8)
            mask[5:9, 5:12] = 255
            (folder / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(folder / "ground_truth" / defect / f"{i:03d}_mask.png")
    (folder / "license.txt").write_text("fixture")
    return {"train": n_train, "good": n_good, "defect": sum(defects.values())}


def assert_labels_match_pixels(train: torch.Tensor, test: torch.Tensor, is_anomaly: torch.Tensor) -> None:
    """Train holds only normal images; the anomaly flags agree with the defect pixels."""
    threshold = (NORMAL_VALUE + DEFECT_VALUE) / 2 / 255
    assert (train.flatten(1).mean(1) < threshold).all()
    assert torch.equal(test.flatten(1).mean(1) > threshold, is_anomaly)
    assert is_anomaly.any() and (~is_anomaly).any()


def test_reads_mvtec_folder_under_root_mvtec(tmp_path):
    counts = write_mvtec_category(tmp_path / "mvtec" / "bottle", rgb=True)
    split = load_split("mvtec", "bottle", root=str(tmp_path))
    assert split.train.shape == (counts["train"], 3, NATIVE, NATIVE)
    assert split.test.shape == (counts["good"] + counts["defect"], 3, NATIVE, NATIVE)
    assert int(split.test_is_anomaly.sum()) == counts["defect"]
    assert_labels_match_pixels(split.train, split.test, split.test_is_anomaly)
    assert split.meta["class_name"] == "bottle" and split.meta["low_res"] is False


def test_reads_categories_directly_under_root_and_keeps_grey(tmp_path):
    write_mvtec_category(tmp_path / "grid", rgb=False)
    split = load_split("mvtec", 4, root=str(tmp_path))
    assert split.train.shape[1] == 1
    assert_labels_match_pixels(split.train, split.test, split.test_is_anomaly)


def test_mvtec_subfolder_wins_over_root(tmp_path):
    write_mvtec_category(tmp_path / "mvtec" / "grid", rgb=False, n_train=4)
    write_mvtec_category(tmp_path / "grid", rgb=False, n_train=6)
    assert load_split("mvtec", "grid", root=str(tmp_path)).train.shape[0] == 4


def test_images_are_resized_as_they_are_read(tmp_path):
    write_mvtec_category(tmp_path / "mvtec" / "zipper", rgb=False)
    train, test, is_anomaly = MVTecAD(str(tmp_path), image_size=8).load_arrays(MVTecAD().classes().index("zipper"), 0)
    assert train.shape[-2:] == (8, 8) and test.shape[-2:] == (8, 8)
    assert_labels_match_pixels(train, test, is_anomaly)


def test_subsampling_is_stratified(tmp_path):
    write_mvtec_category(tmp_path / "mvtec" / "bottle", rgb=True, n_train=10, n_good=4)
    split = load_split("mvtec", "bottle", root=str(tmp_path), max_train=3, max_test=5, seed=2)
    assert split.train.shape[0] == 3
    assert split.test.shape[0] == 5
    assert int(split.test_is_anomaly.sum()) == 3
    assert_labels_match_pixels(split.train, split.test, split.test_is_anomaly)


def test_missing_category_names_the_paths(tmp_path):
    write_mvtec_category(tmp_path / "mvtec" / "bottle", rgb=True)
    with pytest.raises(DataNotFoundError) as info:
        load_split("mvtec", "cable", root=str(tmp_path))
    assert str(tmp_path / "mvtec" / "cable") in str(info.value)
    assert "mvtec-ad" in str(info.value)


def test_category_without_defects_is_reported(tmp_path):
    folder = tmp_path / "mvtec" / "bottle"
    write_mvtec_category(folder, rgb=True)
    for defect in ("crack", "scratch"):
        for path in (folder / "test" / defect).iterdir():
            path.unlink()
    with pytest.raises(DataNotFoundError, match="test/<defect>"):
        load_split("mvtec", "bottle", root=str(tmp_path))
