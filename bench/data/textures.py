"""``textures``: an always-available industrial-style set, written as an MVTec AD tree and read back as one.

Normal images are real 64x64 crops (96 px of the source, downscaled) of scikit-image's bundled CC0 textures
brick, grass and gravel (the three categories). Anomalies are crops with one drawn defect each: ``scratch``
(a light thin stroke), ``hole`` (a dark ellipse), ``crack`` (a dark jagged line) and ``stain`` (a lighter or
darker blob that keeps the texture), with binary masks in ``ground_truth/<defect>/*_mask.png``.
Train crops come from the top rows of each source image and test crops from the bottom rows, so test normals
are unseen texture. The tree is generated once, with a fixed seed, into
``$ROBUST_AD_BENCH_CACHE/textures-<version>`` (default ``~/.cache/robust-ad-bench``); ``--data-root`` is not used.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data.base import register_dataset
from bench.data.mvtec import MVTecAD
from bench.errors import UsageError
from bench.paths import cache_root

#: Bump when the generated pixels change, so stale caches are not reused.
TEXTURES_VERSION = "v1"
TEXTURE_CATEGORIES = ("brick", "grass", "gravel")
DEFECT_TYPES = ("scratch", "hole", "crack", "stain")
GENERATION_SEED = 0
SOURCE_CROP = 96
IMAGE_SIZE = 64
N_TRAIN = 60
N_TEST_GOOD = 20
N_PER_DEFECT = 10
#: Source rows [start, stop) for train crops and for test crops (disjoint).
TRAIN_ROWS = (0, 320)
TEST_ROWS = (320, 512)
#: Pixels whose defect coverage exceeds this belong to the mask.
MASK_COVERAGE = 0.25

#: A defect painter: (grey image as float32 0..255, generator) -> (defective image, coverage in [0, 1]).
Painter = Callable[[np.ndarray, torch.Generator], tuple[np.ndarray, np.ndarray]]


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """A float drawn uniformly from [low, high)."""
    return low + (high - low) * torch.rand((), generator=generator).item()


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """An int drawn uniformly from [low, high)."""
    return int(torch.randint(low, high, (), generator=generator))


def pixel_grid() -> tuple[np.ndarray, np.ndarray]:
    """(row, column) coordinates of every pixel centre of an IMAGE_SIZE square."""
    rows, cols = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    return rows.astype(np.float32), cols.astype(np.float32)


def polyline_distance(points: np.ndarray) -> np.ndarray:
    """Distance of every pixel centre to the polyline through ``points`` ([K, 2] as (row, column))."""
    rows, cols = pixel_grid()
    best = np.full(rows.shape, np.inf, dtype=np.float32)
    for (r0, c0), (r1, c1) in itertools.pairwise(points):
        dr, dc = r1 - r0, c1 - c0
        t = np.clip(((rows - r0) * dr + (cols - c0) * dc) / max(dr * dr + dc * dc, 1e-6), 0.0, 1.0)
        best = np.minimum(best, np.hypot(rows - (r0 + t * dr), cols - (c0 + t * dc)))
    return best


def stroke_coverage(distance: np.ndarray, half_width: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a stroke of ``half_width`` around a distance field."""
    return np.clip(half_width + 0.5 - distance, 0.0, 1.0)


def blend(image: np.ndarray, coverage: np.ndarray, target: np.ndarray | float, strength: float) -> np.ndarray:
    """Move ``image`` towards ``target`` by ``strength`` times the coverage."""
    weight = strength * coverage
    return image * (1.0 - weight) + np.asarray(target, dtype=np.float32) * weight


def paint_scratch(image: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin, slightly bent light stroke, 22-40 px long."""
    centre = np.array([uniform(generator, 16, 48), uniform(generator, 16, 48)], dtype=np.float32)
    angle, length, bend = uniform(generator, 0, np.pi), uniform(generator, 22, 40), uniform(generator, -3, 3)
    direction = np.array([np.sin(angle), np.cos(angle)], dtype=np.float32)
    normal = np.array([-direction[1], direction[0]], dtype=np.float32)
    points = np.stack([centre - direction * length / 2, centre + normal * bend, centre + direction * length / 2])
    coverage = stroke_coverage(polyline_distance(points), uniform(generator, 0.6, 1.0))
    return blend(image, coverage, 235.0, uniform(generator, 0.55, 0.8)), coverage


def paint_crack(image: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark jagged line: a random walk of 5-7 steps of 4-7 px."""
    point = np.array([uniform(generator, 16, 48), uniform(generator, 16, 48)], dtype=np.float32)
    heading = uniform(generator, 0, 2 * np.pi)
    points = [point]
    for _ in range(randint(generator, 5, 8)):
        heading += uniform(generator, -0.8, 0.8)
        step = uniform(generator, 4, 7) * np.array([np.sin(heading), np.cos(heading)], dtype=np.float32)
        points.append(np.clip(points[-1] + step, 2, IMAGE_SIZE - 3))
    coverage = stroke_coverage(polyline_distance(np.stack(points)), uniform(generator, 0.6, 1.1))
    return blend(image, coverage, 20.0, uniform(generator, 0.6, 0.85)), coverage


def paint_hole(image: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark rotated ellipse (radii 3-7 px) in which the texture fades."""
    rows, cols = pixel_grid()
    r0, c0 = uniform(generator, 16, 48), uniform(generator, 16, 48)
    radius_a, radius_b, angle = uniform(generator, 4, 7), uniform(generator, 3, 6), uniform(generator, 0, np.pi)
    u = (rows - r0) * np.cos(angle) + (cols - c0) * np.sin(angle)
    v = -(rows - r0) * np.sin(angle) + (cols - c0) * np.cos(angle)
    radial = np.hypot(u / radius_a, v / radius_b)
    coverage = np.clip((1.0 - radial) * min(radius_a, radius_b) + 0.5, 0.0, 1.0)
    return blend(image, coverage, 0.25 * image + 15.0, uniform(generator, 0.6, 0.85)), coverage


def paint_stain(image: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A lighter or darker blob (three overlapping discs) that keeps the texture underneath."""
    rows, cols = pixel_grid()
    r0, c0 = uniform(generator, 18, 46), uniform(generator, 18, 46)
    coverage = np.zeros_like(rows)
    for _ in range(3):
        r, c, radius = r0 + uniform(generator, -5, 5), c0 + uniform(generator, -5, 5), uniform(generator, 4, 7)
        coverage = np.maximum(coverage, stroke_coverage(np.hypot(rows - r, cols - c), radius))
    shift = uniform(generator, 25, 45) * (1.0 if torch.rand((), generator=generator).item() < 0.5 else -1.0)
    return image + shift * coverage, coverage


PAINTERS: dict[str, Painter] = {
    "scratch": paint_scratch,
    "hole": paint_hole,
    "crack": paint_crack,
    "stain": paint_stain,
}


def load_texture(category: str) -> np.ndarray:
    """scikit-image's bundled 512x512 grey texture ``category`` as uint8."""
    import skimage.data

    return np.asarray(getattr(skimage.data, category)(), dtype=np.uint8)


def random_crop(texture: np.ndarray, rows: tuple[int, int], generator: torch.Generator) -> np.ndarray:
    """A SOURCE_CROP square from ``rows`` of ``texture``, maybe mirrored, downscaled to IMAGE_SIZE (float32)."""
    top = randint(generator, rows[0], rows[1] - SOURCE_CROP + 1)
    left = randint(generator, 0, texture.shape[1] - SOURCE_CROP + 1)
    crop = texture[top : top + SOURCE_CROP, left : left + SOURCE_CROP]
    if torch.rand((), generator=generator).item() < 0.5:
        crop = crop[:, ::-1]
    small = Image.fromarray(np.ascontiguousarray(crop)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32)


def save_png(pixels: np.ndarray, path: Path) -> None:
    """Write a grey image (any float/int array, clipped to 0..255) as an 8-bit PNG, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(path, format="PNG")


def generate_category(texture: np.ndarray, out_dir: Path, generator: torch.Generator) -> None:
    """Write one MVTec-format category: train/good, test/good, test/<defect> and ground_truth/<defect> masks."""
    for i in range(N_TRAIN):
        save_png(random_crop(texture, TRAIN_ROWS, generator), out_dir / "train" / "good" / f"{i:03d}.png")
    for i in range(N_TEST_GOOD):
        save_png(random_crop(texture, TEST_ROWS, generator), out_dir / "test" / "good" / f"{i:03d}.png")
    for defect in DEFECT_TYPES:
        for i in range(N_PER_DEFECT):
            image, coverage = PAINTERS[defect](random_crop(texture, TEST_ROWS, generator), generator)
            save_png(image, out_dir / "test" / defect / f"{i:03d}.png")
            save_png((coverage > MASK_COVERAGE) * 255, out_dir / "ground_truth" / defect / f"{i:03d}_mask.png")


def generate_textures(out_dir: Path, seed: int = GENERATION_SEED) -> None:
    """Write the whole tree (all categories) into ``out_dir``; the same seed gives the same bytes."""
    generator = torch.Generator().manual_seed(seed)
    for category in TEXTURE_CATEGORIES:
        generate_category(load_texture(category), out_dir / category, generator)
    (out_dir / "README.txt").write_text(
        f"robust-ad-bench textures {TEXTURES_VERSION} (seed {seed}): MVTec AD-format crops of scikit-image's CC0 "
        f"textures {', '.join(TEXTURE_CATEGORIES)} with synthetic defects {', '.join(DEFECT_TYPES)}.\n"
    )


def default_textures_dir() -> Path:
    """``<cache root>/textures-<version>``, the cache root being the project's (``bench.paths.cache_root``)."""

    return cache_root() / f"textures-{TEXTURES_VERSION}"


def ensure_textures(target: Path | None = None) -> Path:
    """The textures tree at ``target`` (default: the cache), generated first if missing.

    Generation writes into a temporary sibling folder renamed into place at the end, so an interrupted run never
    leaves a partial tree, and concurrent runs keep whichever finished first.
    """
    target = target or default_textures_dir()
    if target.is_dir():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as error:
        raise UsageError(
            f"cannot write the textures cache in {target.parent.absolute()} ({error.strerror}); "
            "set ROBUST_AD_BENCH_CACHE to a writable folder"
        ) from None
    try:
        generate_textures(staging)
        staging.chmod(0o755)  # mkdtemp creates it private; the finished tree is an ordinary readable folder
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@register_dataset("textures")
class Textures(MVTecAD):
    """Real brick/grass/gravel crops (scikit-image) with drawn scratch/hole/crack/stain defects, in MVTec format."""

    low_res = False

    def classes(self) -> list[str]:
        return list(TEXTURE_CATEGORIES)

    def category_dir(self, category: str) -> Path:
        """The generated category folder in the cache (generated on first use)."""
        return ensure_textures() / category
