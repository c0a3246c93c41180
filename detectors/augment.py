"""Augmentations and distribution shifts (pseudo-anomalies) of the views CSI and COBRA train and score on.

Every random quantity is drawn up front into a small parameter object from an explicit ``torch.Generator``;
applying the parameters is a plain, differentiable torch function of the images. A parameter object holds
either one row per image (training: every image gets its own draw) or a single row broadcast to every image
(the test score: one fixed draw per augmentation index, so an image's score never depends on its batch).

The ops follow the released COBRA/CSI code (``models/transform_layers.py``, ``CutPasteLayer.scar``):
horizontal flip, then the shift (rotation or CutPaste scar), then the SimCLR augmentation (colour jitter
p=0.8 with brightness/contrast/saturation 0.4 and hue 0.1, random grayscale p=0.2, resized crop on low-res).

One deliberate difference: the colour jitter's HSV step (RGB -> HSV, hue shift, saturation/value scaling,
HSV -> RGB) is an ordinary differentiable torch function here, so an attack through the test score gets its
exact gradient. The released ``RandomHSVFunction`` passes the gradient straight through (its backward returns
the output gradient unchanged), a weaker gradient; ours is the stronger, truer one for a test-time attack.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)
CROP_RATIO = (3 / 4, 4 / 3)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def _bernoulli(n: int, p: float, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator) < p


def _choose(flag: Tensor, x: Tensor, if_true: Callable[[], Tensor], if_false: Callable[[], Tensor]) -> Tensor:
    """Per image, ``if_true()`` where ``flag`` is set, else ``if_false()``.

    A flag drawn once for every image (a one-row parameter, as in the test score's views) computes only its
    branch; per-image flags compute both and blend them with 0/1 weights (the same values).
    """
    if flag.numel() == 1:
        return if_true() if bool(flag.reshape(-1)[0]) else if_false()
    m = _rows(flag, x.shape[0], x.device)
    return if_true() * m + if_false() * (1 - m)


def _rows(value: Tensor, n: int, device: torch.device) -> Tensor:
    """A per-row parameter broadcast to ``n`` images, as a [n, 1, 1, 1] float tensor on ``device``."""
    return value.to(device=device, dtype=torch.float32).expand(n).view(n, 1, 1, 1)


@dataclass
class Params:
    """Base of the parameter objects: tensors with one row per image, or a single row shared by all."""

    def to(self, device: torch.device) -> Params:
        """A copy with every tensor on ``device``."""
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


# ----------------------------------------------------------------------------------------------- colour ops
def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """RGB [N, 3, H, W] in [0, 1] -> HSV, hue from atan2 as in the released code; gradients stay finite."""
    r, g, b = rgb.unbind(1)
    cmax, cmin = rgb.amax(1), rgb.amin(1)
    num, den = math.sqrt(3) * (g - b), 2 * r - g - b
    flat = num.square() + den.square() < 1e-12
    hue = torch.atan2(torch.where(flat, torch.zeros_like(num), num), torch.where(flat, torch.ones_like(den), den))
    hue = torch.remainder(hue, 2 * math.pi) / (2 * math.pi)
    sat = torch.where(cmax > 1e-8, (cmax - cmin) / cmax.clamp_min(1e-8), torch.zeros_like(cmax))
    return torch.stack([hue, sat, cmax], 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV [N, 3, H, W] -> RGB (the hexagonal formula of the released code)."""
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = hsv.new_tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)
    k = torch.remainder(n + h * 6, 6)
    t = torch.minimum(k, 4 - k).clamp(0, 1)
    return v - v * s * t


def grayscale(x: Tensor) -> Tensor:
    """Luma of RGB images (or the image itself when single-channel), keeping the channel count."""
    if x.shape[1] == 1:
        return x
    weights = x.new_tensor(LUMA).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True).expand_as(x)


def adjust_hsv(x: Tensor, hue: Tensor, sat: Tensor, val: Tensor) -> Tensor:
    """Shift hue, scale saturation and value, clamp in HSV space (per-image [N,1,1,1] factors)."""
    if x.shape[1] == 1:
        return (x * val).clamp(0, 1)
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0:1] + hue, 1.0)
    s = (hsv[:, 1:2] * sat).clamp(0, 1)
    v = (hsv[:, 2:3] * val).clamp(0, 1)
    return hsv_to_rgb(torch.cat([h, s, v], 1))


def blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """``factor * x + (1 - factor) * other`` clamped to [0, 1] (torchvision's blend)."""
    return (factor * x + (1 - factor) * other).clamp(0, 1)


def flip_where(x: Tensor, mask: Tensor) -> Tensor:
    """Horizontally flip the images whose ``mask`` row is true."""
    return _choose(mask, x, lambda: x.flip(-1), lambda: x)


# -------------------------------------------------------------------------------------- SimCLR augmentation
@dataclass
class SimCLRParams(Params):
    """Draws of the released ``simclr_aug`` (colour jitter, grayscale, resized crop) and the preceding flip."""

    flip: Tensor
    jitter: Tensor
    contrast_first: Tensor
    contrast: Tensor
    hue: Tensor
    saturation: Tensor
    brightness: Tensor
    gray: Tensor
    crop: Tensor  # [n, 4]: width and height fractions, x and y offsets (normalised coordinates)


def draw_simclr(n: int, generator: torch.Generator, *, crop_scale: tuple[float, float] = (0.08, 1.0)) -> SimCLRParams:
    """Draw ``n`` rows of flip + SimCLR augmentation parameters (ColorJitterLayer p=0.8, RandomColorGray p=0.2).

    The crop scale is (0.08, 1) in training and fixed at 0.54 in the test score (released ``eval.py``).
    Crops wider than the image are clamped to the full width (the released code retries, then falls back to it).
    """
    scale = _uniform(n, *crop_scale, generator)
    log_ratio = _uniform(n, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator)
    w = (scale * log_ratio.exp()).sqrt().clamp(max=1.0)
    h = (scale / log_ratio.exp()).sqrt().clamp(max=1.0)
    tx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)
    ty = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    return SimCLRParams(
        flip=_bernoulli(n, 0.5, generator),
        jitter=_bernoulli(n, 0.8, generator),
        contrast_first=_bernoulli(n, 0.5, generator),
        contrast=_uniform(n, 0.6, 1.4, generator),
        hue=_uniform(n, -0.1, 0.1, generator) * 255.0 / 360.0,  # the released layer's hue units
        saturation=_uniform(n, 0.6, 1.4, generator),
        brightness=_uniform(n, 0.6, 1.4, generator),
        gray=_bernoulli(n, 0.2, generator),
        crop=torch.stack([w, h, tx, ty], 1),
    )


def _contrast_per_channel(x: Tensor, factor: Tensor) -> Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0, 1)


def color_jitter(x: Tensor, p: SimCLRParams) -> Tensor:
    """The released ColorJitterLayer: contrast and HSV adjustment in a drawn order, applied with p=0.8."""

    def jittered() -> Tensor:
        n, dev = x.shape[0], x.device
        contrast = _rows(p.contrast, n, dev)
        hue, sat, val = (_rows(v, n, dev) for v in (p.hue, p.saturation, p.brightness))
        return _choose(
            p.contrast_first,
            x,
            lambda: adjust_hsv(_contrast_per_channel(x, contrast), hue, sat, val),
            lambda: _contrast_per_channel(adjust_hsv(x, hue, sat, val), contrast),
        )

    return _choose(p.jitter, x, jittered, lambda: x)


def resized_crop(x: Tensor, crop: Tensor) -> Tensor:
    """Inception crop as an affine resampling (reflection padding), output at the input size."""
    n = x.shape[0]
    crop = crop.to(device=x.device, dtype=x.dtype).expand(n, 4)
    theta = x.new_zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = crop.unbind(1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)


def simclr_augment(x: Tensor, p: SimCLRParams, *, crop: bool) -> Tensor:
    """Colour jitter, random grayscale and (low-res only, as released) the resized crop."""
    x = color_jitter(x, p)
    x = _choose(p.gray, x, lambda: grayscale(x), lambda: x)
    return resized_crop(x, p.crop) if crop else x


# -------------------------------------------------------------------------------------------------- shifts
class Shift:
    """A family of K distribution shifts; shift 0 is the identity, 1..K-1 are pseudo-anomalies."""

    num_shifts: ClassVar[int] = 1

    def draw(self, n: int, image_size: int, generator: torch.Generator) -> Params | None:
        """Random parameters of ``n`` rows (None when the shift is deterministic)."""
        return None

    def apply(self, x: Tensor, k: int, params: Params | None) -> Tensor:
        """Images under shift ``k``."""
        raise NotImplementedError


class RotationShift(Shift):
    """Rotation by k * 90 degrees (K = 4), the low-res pseudo-anomalies of CSI and COBRA."""

    num_shifts = 4

    def apply(self, x: Tensor, k: int, params: Params | None) -> Tensor:
        return torch.rot90(x, k, dims=(2, 3)) if k % 4 else x


@dataclass
class ScarParams(Params):
    """Draws of one CutPaste scar per row (see ``CutPasteScarShift``)."""

    size: Tensor  # [n, 2] patch height, width (pixels)
    source: Tensor  # [n, 2] top-left row, column of the cut
    candidates: Tensor  # [n, 21, 2] destinations tried in order (the first 20 are checked)
    angle: Tensor
    black: Tensor
    jitter: Tensor  # [n, 4] brightness, contrast, saturation, hue factors
    order: Tensor  # [n, 4] permutation of the four jitter ops
    gray: Tensor
    sigma: Tensor
    flip: Tensor


class CutPasteScarShift(Shift):
    """CutPaste "scar" (K = 2), the released ``CutPasteLayer.scar``, with sizes scaled from 224 px.

    Per image: a patch of width U[7,40] and height U[10,40] (x size/224) is cut; it is pasted into an empty
    canvas at a destination whose mean intensity is in (0.15, 0.8) (up to 20 tries, then the 21st is taken);
    the canvas and the paste mask are rotated by U(0,360) degrees about the image centre (nearest); with
    probability 0.85 the canvas gets ColorJitter(0.8,0.8,0.8,0.2) in random order, RandomGrayscale(0.1),
    GaussianBlur(kernel 5x9 scaled, sigma U(0.1,5) scaled) and a horizontal flip p=0.5, otherwise it stays black.
    As in the released code the flip acts on the whole canvas but not on the mask, so a flipped scar is mostly
    black; this is kept on purpose (faithful to the code).
    """

    num_shifts = 2
    tries = 20

    def draw(self, n: int, image_size: int, generator: torch.Generator) -> ScarParams:
        s = image_size / 224
        cut_w = _uniform(n, 7 * s, 40 * s, generator).floor().clamp(1, image_size - 2)
        cut_h = _uniform(n, 10 * s, 40 * s, generator).floor().clamp(1, image_size - 2)
        size = torch.stack([cut_h, cut_w], 1)
        room = (image_size - size - 1).clamp_min(1)
        source = (torch.rand(n, 2, generator=generator) * room).floor()
        candidates = (torch.rand(n, self.tries + 1, 2, generator=generator) * room[:, None]).floor()
        jitter = torch.stack(
            [
                _uniform(n, 0.2, 1.8, generator),
                _uniform(n, 0.2, 1.8, generator),
                _uniform(n, 0.2, 1.8, generator),
                _uniform(n, -0.2, 0.2, generator),
            ],
            1,
        )
        return ScarParams(
            size=size,
            source=source,
            candidates=candidates,
            angle=_uniform(n, 0, 360, generator),
            black=_bernoulli(n, 0.15, generator),
            jitter=jitter,
            order=torch.stack([torch.randperm(4, generator=generator) for _ in range(n)]),
            gray=_bernoulli(n, 0.1, generator),
            sigma=_uniform(n, 0.1 * s, 5 * s, generator),
            flip=_bernoulli(n, 0.5, generator),
        )

    def apply(self, x: Tensor, k: int, params: Params | None) -> Tensor:
        if k == 0:
            return x
        assert isinstance(params, ScarParams)
        n = x.shape[0]
        p = params.to(x.device)
        size, source = p.size.expand(n, 2).long(), p.source.expand(n, 2).long()
        dest = self._destination(x, size, p.candidates.expand(n, -1, 2).long())
        canvas, mask = self._paste(x, size, source, dest)
        canvas = rotate_nearest(canvas, p.angle.expand(n))
        mask = rotate_nearest(mask, p.angle.expand(n))
        canvas = self._transform_patch(canvas, p, n) * (1 - _rows(p.black, n, x.device))
        return x * (1 - mask) + canvas * mask

    def _destination(self, x: Tensor, size: Tensor, candidates: Tensor) -> Tensor:
        """First candidate whose region's mean intensity is in (0.15, 0.8), else the last one."""
        integral = F.pad(x.detach().mean(1).cumsum(1).cumsum(2), (1, 0, 1, 0))
        n, width = x.shape[0], integral.shape[-1]
        flat = integral.flatten(1)

        def at(r: Tensor, c: Tensor) -> Tensor:
            return flat.gather(1, r * width + c)

        r0, c0 = candidates[..., 0], candidates[..., 1]
        r1, c1 = r0 + size[:, 0:1], c0 + size[:, 1:2]
        means = (at(r1, c1) - at(r0, c1) - at(r1, c0) + at(r0, c0)) / (size[:, 0:1] * size[:, 1:2])
        ok = (means > 0.15) & (means < 0.8)
        ok[:, -1] = True
        first = ok.float().argmax(1)
        return candidates[torch.arange(n, device=x.device), first]

    @staticmethod
    def _paste(x: Tensor, size: Tensor, source: Tensor, dest: Tensor) -> tuple[Tensor, Tensor]:
        """Canvas holding the cut patch at its destination (zeros elsewhere) and the paste mask."""
        n, c, h, w = x.shape
        rows = torch.arange(h, device=x.device)[None]
        cols = torch.arange(w, device=x.device)[None]
        in_rows = (rows >= dest[:, 0:1]) & (rows < dest[:, 0:1] + size[:, 0:1])
        in_cols = (cols >= dest[:, 1:2]) & (cols < dest[:, 1:2] + size[:, 1:2])
        mask = (in_rows[:, :, None] & in_cols[:, None, :]).to(x.dtype)[:, None]
        src_rows = (rows + source[:, 0:1] - dest[:, 0:1]).clamp(0, h - 1)
        src_cols = (cols + source[:, 1:2] - dest[:, 1:2]).clamp(0, w - 1)
        moved = x.gather(2, src_rows[:, None, :, None].expand(n, c, h, w))
        moved = moved.gather(3, src_cols[:, None, None, :].expand(n, c, h, w))
        return moved * mask, mask.expand(n, c, h, w)

    def _transform_patch(self, canvas: Tensor, p: ScarParams, n: int) -> Tensor:
        """torchvision ColorJitter (random op order), RandomGrayscale, GaussianBlur and RandomHorizontalFlip."""
        dev = canvas.device
        factors = [_rows(p.jitter[:, i], n, dev) for i in range(4)]
        ops: list[Callable[[Tensor], Tensor]] = [
            lambda t: (t * factors[0]).clamp(0, 1),
            lambda t: blend(t, grayscale(t).mean(dim=(1, 2, 3), keepdim=True), factors[1]),
            lambda t: blend(t, grayscale(t), factors[2]),
            lambda t: adjust_hsv(t, factors[3], torch.ones_like(factors[3]), torch.ones_like(factors[3])),
        ]
        order = p.order.expand(n, 4)
        for position in range(4):
            out = canvas
            for op_index, op in enumerate(ops):
                chosen = _rows(order[:, position] == op_index, n, dev)
                out = out * (1 - chosen) + op(canvas) * chosen
            canvas = out
        g = _rows(p.gray, n, dev)
        canvas = canvas * (1 - g) + grayscale(canvas) * g
        scale = canvas.shape[-1] / 224
        canvas = gaussian_blur(canvas, _odd(5 * scale), _odd(9 * scale), p.sigma.expand(n))
        return flip_where(canvas, p.flip.expand(n))


def _odd(size: float) -> int:
    k = max(1, round(size))
    return k if k % 2 else k + 1 if k > 1 else 1


def rotate_nearest(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image about its centre by its angle (nearest neighbour, zero fill), like TF.rotate."""
    rad = degrees.to(device=x.device, dtype=x.dtype) * math.pi / 180
    cos, sin = rad.cos(), rad.sin()
    theta = torch.stack([torch.stack([cos, -sin, 0 * cos], 1), torch.stack([sin, cos, 0 * cos], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def gaussian_blur(x: Tensor, kernel_w: int, kernel_h: int, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-image sigma and reflect padding (torchvision's GaussianBlur)."""
    if kernel_w == 1 and kernel_h == 1:
        return x
    n, c, h, w = x.shape
    out = x.reshape(1, n * c, h, w)
    sigma = sigma.to(device=x.device, dtype=x.dtype).repeat_interleave(c)
    for size, dim in ((kernel_w, 3), (kernel_h, 2)):
        if size == 1:
            continue
        t = torch.arange(size, device=x.device, dtype=x.dtype) - (size - 1) / 2
        kernel = torch.exp(-t[None].square() / (2 * sigma[:, None].square()))
        kernel = kernel / kernel.sum(1, keepdim=True)
        shape = (n * c, 1, 1, size) if dim == 3 else (n * c, 1, size, 1)
        pad = (size // 2, size // 2, 0, 0) if dim == 3 else (0, 0, size // 2, size // 2)
        out = F.conv2d(F.pad(out, pad, mode="reflect"), kernel.view(shape), groups=n * c)
    return out.view(n, c, h, w)


SHIFTS: dict[str, type[Shift]] = {"rotation": RotationShift, "cutpaste": CutPasteScarShift}
#: The shift family ``"auto"`` picks per dataset kind (keyed by ``low_res``): rotations (K=4) on low-resolution
#: sets, the CutPaste scar (K=2) on industrial/high-resolution ones, as the released ``datasets/config.json``.
KIND_SHIFTS = {True: "rotation", False: "cutpaste"}
#: Largest image size counted as low-res when a detector is given no dataset kind.
LOW_RES_MAX = 64


def resolve_shift(name: str, low_res: bool) -> Shift:
    """The shift family ``name``; ``"auto"`` picks by dataset kind (``KIND_SHIFTS``)."""
    if name == "auto":
        name = KIND_SHIFTS[bool(low_res)]
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; choose from: auto, {', '.join(SHIFTS)}")
    return SHIFTS[name]()


# ------------------------------------------------------------------------------------------ view pipeline
@dataclass
class ViewParams:
    """Everything drawn for one view: flip + SimCLR parameters and the shift parameters."""

    simclr: SimCLRParams
    shift: Params | None


def augment_view(x: Tensor, shift: Shift, k: int, params: ViewParams, *, crop: bool) -> Tensor:
    """The released order: horizontal flip, then shift ``k``, then the SimCLR augmentation."""
    x = flip_where(x, params.simclr.flip)
    x = shift.apply(x, k, params.shift)
    return simclr_augment(x, params.simclr, crop=crop)


def draw_view(
    n: int, shift: Shift, image_size: int, generator: torch.Generator, crop_scale: tuple[float, float]
) -> ViewParams:
    """Draw the parameters of one view for ``n`` rows."""
    return ViewParams(draw_simclr(n, generator, crop_scale=crop_scale), shift.draw(n, image_size, generator))


def shifted_views(
    x: Tensor, shift: Shift, generator: torch.Generator, *, crop: bool, crop_scale: tuple[float, float] = (0.08, 1.0)
) -> Tensor:
    """Training view of a batch: [K * B] images, chunk k = shift k, each image with its own random draw."""
    n, size = x.shape[0], x.shape[-1]
    flip = _bernoulli(n, 0.5, generator)  # one flip per image before shifting, as the released training loop
    views = []
    for k in range(shift.num_shifts):
        params = draw_view(n, shift, size, generator, crop_scale)
        params.simclr.flip = flip
        views.append(augment_view(x, shift, k, params, crop=crop))
    return torch.cat(views)
