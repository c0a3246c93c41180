"""The dataset contract: registry, class resolution, missing data, subsampling, channels and resizing."""

from __future__ import annotations

import pytest
import torch

import bench.data.fmnist as fmnist_module
from bench.data import list_datasets, load_split
from bench.data.base import DATASETS, resize, stratified_subsample
from bench.errors import DataNotFoundError, UsageError

ON_DISK = ("mvtec", "visa", "mnist", "fmnist", "cifar10", "cifar100", "svhn")


def test_all_loaders_are_registered():
    assert set(ON_DISK) | {"digits", "textures"} <= set(list_datasets())


@pytest.mark.parametrize("name", sorted(list_datasets()))
def test_unknown_class_names_the_valid_classes(name):
    with pytest.raises(UsageError, match="choose from") as info:
        load_split(name, "no-such-class")
    message = str(info.value)
    assert name in message
    with pytest.raises(UsageError, match="choose from"):
        load_split(name, 999)
    first = DATASETS.get(name)().classes()[0]
    assert first in message


@pytest.mark.parametrize("name", ON_DISK)
def test_missing_data_names_the_path_on_one_line(name, tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist_module, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    root = tmp_path / "empty-root"
    root.mkdir()
    with pytest.raises(DataNotFoundError) as info:
        load_split(name, 0, root=str(root))
    message = str(info.value)
    assert str(root) in message
    assert "\n" not in message
    assert "download" in message or "install" in message


def test_stratified_subsample_is_seeded_and_keeps_shares():
    labels = torch.tensor([0] * 80 + [1] * 15 + [2] * 5)
    first = stratified_subsample(labels, 20, seed=3)
    assert torch.equal(first, stratified_subsample(labels, 20, seed=3))
    assert not torch.equal(first, stratified_subsample(labels, 20, seed=4))
    assert first.numel() == 20
    assert torch.equal(first, first.unique())
    assert torch.bincount(labels[first], minlength=3).tolist() == [16, 3, 1]


def test_stratified_subsample_never_exceeds_the_limit_and_keeps_every_label():
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    for limit in (3, 4, 5, 7, 29):
        keep = stratified_subsample(labels, limit, seed=0)
        assert keep.numel() == limit
        assert set(labels[keep].tolist()) == {0, 1, 2}
    rare = torch.tensor([0] * 98 + [1] * 2)
    assert set(rare[stratified_subsample(rare, 10, seed=0)].tolist()) == {0, 1}


def test_stratified_subsample_without_limit_keeps_all_and_rejects_non_positive():
    labels = torch.zeros(7)
    assert torch.equal(stratified_subsample(labels, None, 0), torch.arange(7))
    assert torch.equal(stratified_subsample(labels, 50, 0), torch.arange(7))
    with pytest.raises(UsageError):
        stratified_subsample(labels, 0, 0)


def test_load_split_subsamples_converts_channels_and_resizes():
    full = load_split("digits", 3)
    split = load_split("digits", 3, seed=1, image_size=16, max_train=50, max_test=100, channels=3)
    assert split.train.shape == (50, 3, 16, 16)
    assert split.test.shape == (100, 3, 16, 16)
    share = full.test_is_anomaly.float().mean().item()
    assert split.test_is_anomaly.float().mean().item() == pytest.approx(share, abs=0.01)
    assert torch.equal(split.train[:, 0], split.train[:, 2])
    assert split.train.min() >= 0.0 and split.train.max() <= 1.0
    again = load_split("digits", 3, seed=1, image_size=16, max_train=50, max_test=100, channels=3)
    assert split.identity == again.identity
    other_seed = load_split("digits", 3, seed=2, image_size=16, max_train=50, max_test=100, channels=3)
    assert split.identity != other_seed.identity


def test_load_split_rejects_bad_options():
    with pytest.raises(UsageError, match="channels"):
        load_split("digits", 0, channels=2)
    with pytest.raises(UsageError, match="image_size"):
        load_split("digits", 0, image_size=0)


def test_resize_keeps_range_and_identity_at_native_size():
    images = torch.rand(2, 1, 8, 8)
    assert resize(images, None) is images
    assert resize(images, 8) is images
    bigger = resize(images, 20)
    assert bigger.shape == (2, 1, 20, 20)
    assert bigger.min() >= 0.0 and bigger.max() <= 1.0
