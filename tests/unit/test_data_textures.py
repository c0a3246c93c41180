"""The textures generator: deterministic MVTec-format trees with real defects, cached atomically, read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bench.data.textures as textures
from bench.data import load_split
from bench.data.mvtec import png_files
from bench.errors import UsageError


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("textures") / "tree"
    textures.generate_textures(out, seed=0)
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ROBUST_AD_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_tree_has_the_mvtec_layout_and_sizes(tree):
    for category in textures.TEXTURE_CATEGORIES:
        folder = tree / category
        assert len(png_files(folder / "train" / "good")) == textures.N_TRAIN
        assert len(png_files(folder / "test" / "good")) == textures.N_TEST_GOOD
        for defect in textures.DEFECT_TYPES:
            images = png_files(folder / "test" / defect)
            masks = png_files(folder / "ground_truth" / defect)
            assert len(images) == textures.N_PER_DEFECT
            assert [m.name for m in masks] == [f"{p.stem}_mask.png" for p in images]
        with Image.open(folder / "train" / "good" / "000.png") as image:
            assert image.mode == "L" and image.size == (textures.IMAGE_SIZE, textures.IMAGE_SIZE)


def test_masks_are_binary_non_empty_and_small(tree):
    for mask_path in tree.rglob("*_mask.png"):
        mask = np.asarray(Image.open(mask_path))
        assert set(np.unique(mask).tolist()) == {0, 255}
        assert 4 <= (mask > 0).sum() <= 0.15 * mask.size


def test_generation_is_deterministic(tree, tmp_path):
    textures.generate_textures(tmp_path / "again", seed=0)
    assert tree_bytes(tmp_path / "again") == tree_bytes(tree)
    textures.generate_textures(tmp_path / "other", seed=1)
    other = tree_bytes(tmp_path / "other")
    assert other.keys() == tree_bytes(tree).keys()
    assert other != tree_bytes(tree)


@pytest.mark.parametrize("defect", textures.DEFECT_TYPES)
def test_defects_change_pixels_inside_their_mask_only(defect):
    generator = torch.Generator().manual_seed(7)
    texture = textures.load_texture("gravel")
    for _ in range(5):
        clean = textures.random_crop(texture, textures.TEST_ROWS, generator)
        painted, coverage = textures.PAINTERS[defect](clean, generator)
        mask = coverage > textures.MASK_COVERAGE
        change = np.abs(np.clip(painted, 0, 255) - clean)
        assert mask.any()
        assert change[coverage == 0].max() == 0
        assert change[mask].mean() > 15


def test_train_crops_come_from_rows_disjoint_from_test_crops():
    assert textures.TRAIN_ROWS[1] <= textures.TEST_ROWS[0]
    texture = np.zeros((512, 512), dtype=np.uint8)
    texture[textures.TEST_ROWS[0] :] = 255
    generator = torch.Generator().manual_seed(0)
    assert all(textures.random_crop(texture, textures.TRAIN_ROWS, generator).max() == 0 for _ in range(20))
    assert all(textures.random_crop(texture, textures.TEST_ROWS, generator).min() == 255 for _ in range(20))


def test_load_split_generates_once_into_the_cache_and_reads_back(cache):
    split = load_split("textures", "grass", image_size=32)
    target = cache / f"textures-{textures.TEXTURES_VERSION}"
    assert target.is_dir()
    assert [p.name for p in cache.iterdir()] == [target.name]
    assert split.train.shape == (textures.N_TRAIN, 1, 32, 32)
    n_anomalous = textures.N_PER_DEFECT * len(textures.DEFECT_TYPES)
    assert split.test.shape[0] == textures.N_TEST_GOOD + n_anomalous
    assert int(split.test_is_anomaly.sum()) == n_anomalous
    assert split.meta["low_res"] is False
    stamp = (target / "grass" / "train" / "good" / "000.png").stat().st_mtime_ns
    again = load_split("textures", "grass", image_size=32)
    assert (target / "grass" / "train" / "good" / "000.png").stat().st_mtime_ns == stamp
    assert again.identity == split.identity


def test_interrupted_generation_leaves_no_tree(cache, monkeypatch):
    def write_some_then_fail(out_dir: Path, seed: int = 0) -> None:
        (out_dir / "brick" / "train" / "good").mkdir(parents=True)
        (out_dir / "brick" / "train" / "good" / "000.png").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(textures, "generate_textures", write_some_then_fail)
    with pytest.raises(KeyboardInterrupt):
        load_split("textures", "brick")
    assert list(cache.iterdir()) == []


def test_unwritable_cache_is_a_usage_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ROBUST_AD_BENCH_CACHE", str(blocker / "cache"))
    with pytest.raises(UsageError, match="ROBUST_AD_BENCH_CACHE"):
        load_split("textures", "brick")
