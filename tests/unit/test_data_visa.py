"""The VisA loader on a tiny tree in VisA's release format, with and without the official 1cls split file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import load_split
from bench.data.visa import VisA
from bench.errors import DataNotFoundError

NORMAL_VALUE, ANOMALY_VALUE = 50, 190
WIDTH, HEIGHT = 30, 20


def write_jpg(path: Path, value: int) -> None:
    """A WIDTH x HEIGHT RGB JPEG of a flat colour near ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), value, dtype=np.uint8)).save(path, format="JPEG")


def write_visa_category(visa_dir: Path, category: str, n_normal: int = 20, n_anomaly: int = 4) -> None:
    """Data/Images/{Normal,Anomaly}/*.JPG and Data/Masks/Anomaly/*.png, named as in the VisA release."""
    images = visa_dir / category / "Data" / "Images"
    for i in range(n_normal):
        write_jpg(images / "Normal" / f"{i:04d}.JPG", NORMAL_VALUE)
    for i in range(n_anomaly):
        write_jpg(images / "Anomaly" / f"{i:03d}.JPG", ANOMALY_VALUE)
        mask = visa_dir / category / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png"
        mask.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((HEIGHT, WIDTH), dtype=np.uint8)).save(mask)


def write_split_csv(visa_dir: Path, category: str, train: list[int], test_normal: list[int], anomalies: int) -> None:
    """split_csv/1cls.csv with the official columns and relative paths."""
    path = visa_dir / "split_csv" / "1cls.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerow(["pcb1", "train", "normal", "pcb1/Data/Images/Normal/0000.JPG", ""])
        for i in train:
            writer.writerow([category, "train", "normal", f"{category}/Data/Images/Normal/{i:04d}.JPG", ""])
        for i in test_normal:
            writer.writerow([category, "test", "normal", f"{category}/Data/Images/Normal/{i:04d}.JPG", ""])
        for i in range(anomalies):
            image, mask = f"{category}/Data/Images/Anomaly/{i:03d}.JPG", f"{category}/Data/Masks/Anomaly/{i:03d}.png"
            writer.writerow([category, "test", "anomaly", image, mask])


def assert_labels_match_pixels(train: torch.Tensor, test: torch.Tensor, is_anomaly: torch.Tensor) -> None:
    threshold = (NORMAL_VALUE + ANOMALY_VALUE) / 2 / 255
    assert (train.flatten(1).mean(1) < threshold).all()
    assert torch.equal(test.flatten(1).mean(1) > threshold, is_anomaly)


def test_uses_the_official_split_csv(tmp_path):
    visa = tmp_path / "visa"
    write_visa_category(visa, "candle")
    write_split_csv(visa, "candle", train=list(range(12)), test_normal=[12, 13, 14], anomalies=4)
    split = load_split("visa", "candle", root=str(tmp_path))
    assert split.train.shape == (12, 3, HEIGHT, WIDTH)
    assert split.test.shape[0] == 7
    assert int(split.test_is_anomaly.sum()) == 4
    assert_labels_match_pixels(split.train, split.test, split.test_is_anomaly)
    assert split.meta["low_res"] is False


def test_falls_back_to_a_fixed_seeded_split_without_csv(tmp_path):
    write_visa_category(tmp_path, "pcb4", n_normal=20, n_anomaly=4)
    index = VisA().classes().index("pcb4")
    train, test, is_anomaly = VisA(str(tmp_path), image_size=16).load_arrays(index, seed=0)
    assert train.shape == (18, 3, 16, 16)
    assert test.shape[0] == 6 and int(is_anomaly.sum()) == 4
    assert_labels_match_pixels(train, test, is_anomaly)
    again = VisA(str(tmp_path), image_size=16).load_arrays(index, seed=5)
    assert all(torch.equal(a, b) for a, b in zip((train, test, is_anomaly), again, strict=True))


def test_fallback_split_is_disjoint(tmp_path):
    from bench.data.visa import fallback_split

    write_visa_category(tmp_path, "candle", n_normal=30)
    train, test_normal, anomalies = fallback_split(tmp_path / "candle")
    assert len(test_normal) == 3 and len(train) == 27 and len(anomalies) == 4
    assert not set(train) & set(test_normal)


def test_csv_listing_missing_images_is_reported(tmp_path):
    visa = tmp_path / "visa"
    write_visa_category(visa, "candle", n_normal=5)
    write_split_csv(visa, "candle", train=[0, 1, 2, 7], test_normal=[3], anomalies=2)
    with pytest.raises(DataNotFoundError, match=r"0007\.JPG"):
        load_split("visa", "candle", root=str(tmp_path))


def test_missing_category_names_the_paths(tmp_path):
    write_visa_category(tmp_path / "visa", "candle")
    with pytest.raises(DataNotFoundError) as info:
        load_split("visa", "fryum", root=str(tmp_path))
    assert str(tmp_path / "visa" / "fryum") in str(info.value)


def test_large_jpegs_are_decoded_at_reduced_scale_without_changing_content(tmp_path):
    from bench.data._files import read_images

    rows, cols = np.mgrid[0:480, 0:640]
    pixels = np.stack([rows * 255 // 479, cols * 255 // 639, np.full_like(rows, 90)], axis=-1).astype(np.uint8)
    path = tmp_path / "big.JPG"
    Image.fromarray(pixels).save(path, format="JPEG", quality=95)
    fast = read_images([path], "RGB", (40, 40))
    with Image.open(path) as image:
        full = np.asarray(image.convert("RGB").resize((40, 40), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    assert fast.shape == (1, 3, 40, 40)
    assert np.abs(fast[0].permute(1, 2, 0).numpy() - full).max() < 0.05
