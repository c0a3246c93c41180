"""CSI (Tack et al., NeurIPS 2020): contrastive learning on distributionally shifted instances, ensemble score.

``ShiftedContrastiveDetector`` holds everything CSI and COBRA share: the network (ResNet-18 + projection head +
shift classifier), the training loop of the released COBRA ``train.py`` (LARS around SGD, the released warm-up x10
then cosine schedule stepped every iteration, ``released_lr_factor``), the fitted feature bank and the
memory-bounded ensemble score of the released COBRA ``evaluation/eval.py`` (which is CSI's "CSI" score):

    normality(x) = 1/K sum_k [ w_sim_k * max_m <zbar_k(x), axis_k,m> + w_shi_k * logit_k(x)[k] ]

where zbar_k(x) is the unnormalised projection averaged over T fixed-seed augmentations of x under shift k,
axis_k the L2-normalised training means and the weights the inverses of their training averages. The
detector's score is ``-normality`` (higher = more anomalous).

Deviations from the released code, all documented where they happen:
- the test augmentations are drawn once per (augmentation index t, shift k) from a generator seeded with
  ``score_seed + t`` and shared by every image, so an image's score depends on nothing but the image (the
  released code seeds per batch, so a test image's augmentation depends on its position in the batch). The
  score is therefore deterministic and ``stochastic = False``;
- LARS is timm's ``Lars`` (the update of torchlars' ``LARS(SGD(momentum, weight_decay), trust_coef, eps=1e-8)``,
  which needs CUDA to build: see ``lars_optimiser``); ``optimizer="sgd"`` is the plain SGD that the released code
  silently falls back to without torchlars (its lr then peaks at 10 x ``lr`` too);
- the dataset kind (``low_res``, from the split's metadata) picks the pseudo-anomalies, the crop and COBRA's
  training eps; the released code picks them by dataset name. Without a kind, images up to 64 px count as low-res;
- ``train_per_epoch`` resamples the training set once per fit as the released ``set_dataset_count`` (10,000 images
  for MVTec), shuffled every epoch; ``"auto"`` applies it to every industrial set (VisA and textures too);
- the colour jitter's HSV step is differentiated exactly (``detectors.augment``); the released
  ``RandomHSVFunction`` passes the gradient straight through, a weaker gradient for the test-time attack;
- a shift whose mean own-shift logit on the training images is not positive gets w_shi_k = 0 instead of the
  released 1 / mean, whose sign flip would turn that term into a normality *penalty* (``shift_weights``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import UsageError
from bench.progress import NULL_PROGRESS, Progress
from detectors.augment import (
    LOW_RES_MAX,
    Shift,
    ViewParams,
    augment_view,
    draw_view,
    resolve_shift,
    shifted_views,
)
from detectors.base import Detector, DetectorConfig, register_detector
from detectors.common import setup_seeded
from detectors.contrastive import nt_xent
from detectors.nets import ResNet18
from detectors.papers import Citation, PaperResult, cobra_results

#: Cap of the derived budget. The activation estimate is about 2x conservative (a 2 GB budget peaks at 1.07 GB on a
#: width-64 PGD step), and chunks of 8 images rather than 4 halve the per-view augmentation calls of a step.
DEFAULT_MEMORY_CAP_MB = 4096.0
BYTES_PER_FLOAT = 4
AUTOGRAD_FACTOR = 2  # saved activations per module output during a backward pass (inputs + outputs)
#: The released GradualWarmupScheduler's multiplier: the lr rises from ``lr`` to 10 x ``lr`` over the warm-up.
WARMUP_MULTIPLIER = 10.0
#: Training images per epoch of an industrial set with ``train_per_epoch = "auto"`` (released: MVTec 10,000).
INDUSTRIAL_TRAIN_PER_EPOCH = 10_000
#: The tiny settings of CSI and the COBRA variants (``Detector.tiny_config``).
CSI_TINY: dict[str, Any] = {
    "epochs": 5,
    "max_train": 64,
    "batch_size": 32,
    # 10 LARS steps (trust 0.001) barely move the weights: plain SGD, lr_init 0.02 peaking at 0.2 after warm-up
    "optimizer": "sgd",
    "lr": 0.02,
    "warmup_epochs": 1,
    "width": 8,
    "blocks": [1, 1, 1, 1],
    "score_samples": 2,
}


@dataclass
class CSIConfig(DetectorConfig):
    """CSI hyperparameters (released defaults; the paper presets choose epochs and sizes).

    Attributes:
        epochs / batch_size / lr: training length, images per step (each expanded to 2 views x K shifts) and the
            released ``lr_init``: the lr starts at ``lr``, peaks at 10 x ``lr`` after the warm-up.
        optimizer: ``"lars"`` (released: LARS with trust coefficient ``lars_trust`` around SGD) or ``"sgd"``.
        momentum / weight_decay / lars_trust: SGD momentum and weight decay, LARS trust coefficient (released).
        warmup_epochs: epochs of the linear warm-up from ``lr`` to 10 x ``lr`` (at least 1, as released); then a
            cosine with T_max = ``epochs`` stepped at (epoch - warmup_epochs), every iteration
            (``released_lr_factor``).
        train_per_epoch: training images per epoch, resampled once per fit as the released ``set_dataset_count``
            (whole copies of the set plus a random remainder, or a random subset): ``"auto"`` = 10,000 on
            industrial/high-res sets (released for MVTec; also VisA and textures here), all images on low-res ones;
            ``"all"`` = one pass over the images; an integer = that many on every dataset.
        low_res: the dataset's kind, filled from the split's metadata by the grid (``create_detector(meta=...)``);
            None = by image size (up to 64 px is low-res).
        stem: ResNet stem, ``"auto"`` = cifar up to 64 px, imagenet above (by pixel size, not kind).
        width / blocks: ResNet-18 width (64 in the paper) and blocks per stage ((2,2,2,2) in the paper).
        proj_dim: projection output size; None = 2 * width (128 at width 64, the released 512-512-128 head).
        temperature: NT-Xent temperature.
        shift: pseudo-anomaly family, ``"rotation"`` | ``"cutpaste"`` | ``"auto"`` (by kind: rotations K=4 on
            low-res sets, the CutPaste scar K=2 on industrial ones).
        crop: resized crop in the SimCLR augmentation, ``"auto"`` = on for low-res sets only (the released code has
            no crop for MVTec/DAGM/ImageNet).
        score_samples: T, augmentations averaged per shift in the test score (10 released).
        score_crop_scale: fixed crop scale of the test augmentations (0.54 released).
        score_seed: seed of the fixed test augmentations (augmentation t uses score_seed + t).
        max_train: seeded subsample of the training images (None = all), before ``train_per_epoch``.
        max_memory_mb: activation memory budget of the chunked score; None = derived from the device.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 0.1
    optimizer: str = "lars"
    momentum: float = 0.9
    weight_decay: float = 1e-6
    lars_trust: float = 0.001
    warmup_epochs: int = 10
    train_per_epoch: int | str = "auto"
    low_res: bool | None = None
    stem: str = "auto"
    width: int = 64
    blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    proj_dim: int | None = None
    temperature: float = 0.5
    shift: str = "rotation"
    crop: str | bool = "auto"
    score_samples: int = 10
    score_crop_scale: float = 0.54
    score_seed: int = 0
    max_train: int | None = None
    max_memory_mb: float | None = None

    def check(self) -> None:
        """Reject options the training loop cannot honour (UsageError naming the valid choices); run by ``build``."""
        if self.optimizer not in OPTIMISERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; choose from: {', '.join(OPTIMISERS)}")
        if self.warmup_epochs < 1:
            raise UsageError(f"invalid warmup_epochs {self.warmup_epochs}: use an integer >= 1 (as released)")
        per_epoch = self.train_per_epoch
        if per_epoch not in TRAIN_PER_EPOCH_WORDS and not (isinstance(per_epoch, int) and per_epoch >= 1):
            raise UsageError(f"invalid train_per_epoch {per_epoch!r}; choose from: auto, all or a positive integer")


def released_lr_factor(step: int, steps_per_epoch: int, warmup_epochs: int, epochs: int) -> float:
    """lr / ``lr`` at optimiser step ``step`` (0-based) of the released schedule (``training/scheduler.py``).

    The released loop calls ``GradualWarmupScheduler(multiplier=10, total_epoch=W, after_scheduler=
    CosineAnnealingLR(T_max=epochs)).step(e)`` after each step with the fractional epoch e = step / L (L steps
    per epoch), so step i >= 1 runs at the value for e = (i - 1) / L and step 0 at ``lr`` itself:
    - e <= W: 1 + 9 e / W (from ``lr`` up to 10 ``lr``);
    - e > W: 10 (1 + cos(pi (e - W) / epochs)) / 2, which ends near 2.5% of the peak after 100 epochs with W = 10;
      at the first e > W the released warm-up hands over by returning the cosine's ``get_lr`` at its step 0,
      which under the released torch 2.6 is the current lr, so that one step repeats the previous step's lr
      (torch 2.14 scales that one step by 2 / (1 + cos(pi / epochs)) instead: x 1.00025 at 100 epochs).

    Checked step by step against the released scheduler classes driven as ``train.py`` drives them.
    """
    if step == 0:
        return 1.0
    epoch = (step - 1) / steps_per_epoch
    if epoch <= warmup_epochs:
        return 1 + (WARMUP_MULTIPLIER - 1) * epoch / warmup_epochs
    if (step - 2) / steps_per_epoch <= warmup_epochs:
        return released_lr_factor(step - 1, steps_per_epoch, warmup_epochs, epochs)
    return WARMUP_MULTIPLIER * (1 + math.cos(math.pi * (epoch - warmup_epochs) / epochs)) / 2


def lars_optimiser(params: Iterable[nn.Parameter], cfg: CSIConfig) -> torch.optim.Optimizer:
    """The released ``LARS(SGD(lr, momentum, weight_decay), eps=1e-8, trust_coef)`` as timm's ``Lars``.

    torchlars (the released dependency) builds a CUDA extension and does not install on a machine without a GPU
    toolkit; timm's maintained ``Lars`` computes the same update on any device: per parameter tensor w with
    gradient g, g' = (g + wd w) * trust * ||w|| / (||g|| + wd ||w|| + 1e-8) (1 where a norm is 0), then SGD with
    momentum on g' without further weight decay.
    """
    from timm.optim import Lars

    return Lars(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, trust_coeff=cfg.lars_trust)


def sgd_optimiser(params: Iterable[nn.Parameter], cfg: CSIConfig) -> torch.optim.Optimizer:
    """Plain SGD with momentum and weight decay (what the released code falls back to without torchlars)."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


OPTIMISERS: dict[str, Callable[[Iterable[nn.Parameter], CSIConfig], torch.optim.Optimizer]] = {
    "lars": lars_optimiser,
    "sgd": sgd_optimiser,
}
TRAIN_PER_EPOCH_WORDS = ("auto", "all")


def resample_indices(n: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` indices into ``n`` images as the released ``set_dataset_count``: count // n whole copies of the
    set plus count % n distinct random images (a random subset of ``count`` images when count < n)."""
    return torch.cat([torch.arange(n)] * (count // n) + [torch.randperm(n, generator=generator)[: count % n]])


class ShiftContrastNet(nn.Module):
    """ResNet-18 with a projection head (D-D-proj_dim) and a linear shift classifier (D-K)."""

    def __init__(self, in_channels: int, stem: str, width: int, blocks: tuple[int, ...], proj_dim: int, k: int):
        super().__init__()
        self.backbone = ResNet18(in_channels, stem=stem, width=width, blocks=tuple(blocks))
        dim = self.backbone.out_dim
        self.projection = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, proj_dim))
        self.shift_head = nn.Linear(dim, k)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Unnormalised projection [N, proj_dim] and shift logits [N, K]."""
        h = self.backbone(x)
        return self.projection(h), self.shift_head(h)


class _PerSampleGradient(torch.autograd.Function):
    """Chunked evaluation of a per-sample function f(x) -> [N, m] with its input gradient, in bounded memory.

    Each output row depends only on its own input image (eval-mode BatchNorm, augmentations shared by all
    images), so the gradient of any loss sum_i g_i . f(x_i) is g_i . df(x_i)/dx_i. Forward evaluates f chunk by
    chunk and immediately back-propagates each output column of the chunk to its inputs, keeping only these
    per-sample gradients (the size of x); backward scales them by the incoming gradient. One forward and m
    backward passes per image in total, and the activations of a single chunk in memory at any time.
    Gradients flow to x only (not to the network weights) and double backward is not supported.
    """

    @staticmethod
    def forward(ctx, x: Tensor, fn, chunk: int) -> Tensor:  # type: ignore[override]
        outputs, grads = [], []
        for part in x.split(chunk):
            with torch.enable_grad():
                leaf = part.detach().requires_grad_(True)
                out = fn(leaf)
                columns = out.shape[1]
                jac = [
                    torch.autograd.grad(out[:, j].sum(), leaf, retain_graph=j < columns - 1)[0] for j in range(columns)
                ]
            outputs.append(out.detach())
            grads.append(torch.stack(jac, 1))
        ctx.save_for_backward(torch.cat(grads))
        return torch.cat(outputs)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (jac,) = ctx.saved_tensors
        return (grad_out.view(*grad_out.shape, 1, 1, 1) * jac).sum(1), None, None


def default_memory_mb(device: torch.device) -> float:
    """Half the free CUDA memory, or a quarter of the available RAM, capped at ``DEFAULT_MEMORY_CAP_MB`` (4 GB)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return min(DEFAULT_MEMORY_CAP_MB, free / 2**20 / 2)
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return min(DEFAULT_MEMORY_CAP_MB, int(line.split()[1]) / 1024 / 4)
    return DEFAULT_MEMORY_CAP_MB


def activation_bytes_per_image(net: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Bytes of module outputs one image produces in ``net`` (measured with hooks), times the autograd factor."""
    total = 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        for tensor in output if isinstance(output, tuple) else (output,):
            if isinstance(tensor, Tensor):
                total += tensor.numel()

    leaves = [m for m in net.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            param = next(net.parameters())
            net(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    return total * BYTES_PER_FLOAT * AUTOGRAD_FACTOR


def max_similarity(z: Tensor, bank: Tensor, rows: int) -> Tensor:
    """max_m <z_i, bank_m> for every row of ``z``, comparing against ``rows`` bank entries at a time."""
    best = None
    for part in bank.split(rows):
        sims = (z @ part.t()).amax(1)
        best = sims if best is None else torch.maximum(best, sims)
    return best if best is not None else z.new_full((z.shape[0],), float("-inf"))


def shift_weights(mean_own_logit: Tensor) -> Tensor:
    """w_shi_k = 1 / mean own-shift logit on the training set, or 0 where that mean is not positive.

    The released weight is 1 / mean; a non-positive mean (a shift the classifier has not learnt to recognise on
    the training images, seen after short fits) would flip the sign of that shift's term or blow it up, so the
    term is dropped instead (a documented deviation that changes nothing once every mean is positive).
    """
    positive = mean_own_logit > 0
    return torch.where(positive, 1 / mean_own_logit.where(positive, torch.ones_like(mean_own_logit)), 0.0)


class ShiftedContrastiveDetector(Detector):
    """Shared base of CSI and COBRA: network, training loop, feature bank and the chunked ensemble score.

    Subclasses implement ``training_loss``. Fitted buffers: ``feature_bank`` [M, K * d] (per shift, the
    L2-normalised mean projection of each training image), ``weight_sim`` [K] and ``weight_shi`` [K].
    """

    Config = CSIConfig
    stochastic = False

    def build(self, input_shape: tuple[int, int, int]) -> None:
        cfg = self.config
        cfg.check()
        channels, _, size = input_shape
        self.image_size = size
        #: The dataset's kind: from the split's metadata (``config.low_res``), else by image size.
        self.low_res = cfg.low_res if cfg.low_res is not None else size <= LOW_RES_MAX
        self.shift: Shift = resolve_shift(cfg.shift, self.low_res)
        self.crop = self.low_res if cfg.crop == "auto" else bool(cfg.crop)
        stem = cfg.stem if cfg.stem != "auto" else ("cifar" if size <= LOW_RES_MAX else "imagenet")
        k = self.shift.num_shifts
        proj_dim = cfg.proj_dim or 2 * cfg.width
        self.net = ShiftContrastNet(channels, stem, cfg.width, tuple(cfg.blocks), proj_dim, k)
        self.register_buffer("feature_bank", torch.zeros(0, k * proj_dim))
        self.register_buffer("weight_sim", torch.ones(k))
        self.register_buffer("weight_shi", torch.ones(k))
        self.passes_per_score = cfg.score_samples * k
        self._bytes_per_pass = activation_bytes_per_image(self.net, input_shape)
        self._derived_memory_bytes: dict[torch.device, float] = {}
        self._eval_params = self._draw_eval_params()

    def _draw_eval_params(self) -> list[list[ViewParams]]:
        """One shared parameter draw per (augmentation t, shift k); augmentation t is seeded score_seed + t."""
        scale = (self.config.score_crop_scale, self.config.score_crop_scale)
        params = []
        for t in range(self.config.score_samples):
            generator = torch.Generator().manual_seed(self.config.score_seed + t)
            params.append([draw_view(1, self.shift, self.image_size, generator, scale) for _ in self._shifts()])
        return params

    def _shifts(self) -> range:
        return range(self.shift.num_shifts)

    # ---------------------------------------------------------------------------------------------- fitting
    def fit(
        self,
        train: Tensor,
        *,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> ShiftedContrastiveDetector:
        """Train on normal images, then compute the feature bank (``generator`` must be a CPU generator)."""
        generator = setup_seeded(self, train, device, generator)
        if self.config.max_train is not None and train.shape[0] > self.config.max_train:
            train = train[torch.randperm(train.shape[0], generator=generator)[: self.config.max_train]]
        self._train(train, generator, progress)
        self.eval()
        self._fit_bank(train)
        return self

    def train_per_epoch(self, n: int) -> int:
        """Training images per epoch for a set of ``n`` images (``config.train_per_epoch``)."""
        per_epoch = self.config.train_per_epoch
        if per_epoch == "auto":
            return n if self.low_res else INDUSTRIAL_TRAIN_PER_EPOCH
        return n if per_epoch == "all" else int(per_epoch)

    def passes_per_training_image(self) -> tuple[float, float]:
        """Backbone passes per training image per epoch: (forward+backward, forward only); CSI: 2 views x K."""
        return 2.0 * self.shift.num_shifts, 0.0

    def cost_network(self) -> nn.Module:
        return self.net

    def fit_passes(self, n_train: int) -> tuple[float, float]:
        """Training passes (epochs x ``train_per_epoch`` images) plus the feature bank's T x K forwards per image."""
        cfg = self.config
        n = min(n_train, cfg.max_train) if cfg.max_train is not None else n_train
        images = cfg.epochs * self.train_per_epoch(n)
        train, forward = self.passes_per_training_image()
        return images * train, images * forward + n * self.passes_per_score

    def _train(self, train: Tensor, generator: torch.Generator, progress: Progress) -> None:
        """The released loop: each epoch shuffles the resampled set; one optimiser and lr step per batch."""
        cfg = self.config
        optimiser = OPTIMISERS[cfg.optimizer](self.net.parameters(), cfg)
        pool = resample_indices(train.shape[0], self.train_per_epoch(train.shape[0]), generator)
        steps_per_epoch = math.ceil(pool.numel() / cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: released_lr_factor(step, steps_per_epoch, cfg.warmup_epochs, cfg.epochs)
        )
        for _ in progress.track(range(cfg.epochs), f"fit {self.name}"):
            for index in pool[torch.randperm(pool.numel(), generator=generator)].split(cfg.batch_size):
                self.net.train()
                loss = self.training_loss(train[index].to(self.device), generator)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                scheduler.step()

    def two_views(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Two shifted-and-augmented views [K * B] of a batch and their shift labels."""
        v1 = shifted_views(x, self.shift, generator, crop=self.crop)
        v2 = shifted_views(x, self.shift, generator, crop=self.crop)
        labels = torch.arange(self.shift.num_shifts, device=x.device).repeat_interleave(x.shape[0])
        return v1, v2, labels

    def training_loss(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """CSI: NT-Xent over the two views (other shifts of the same image are negatives) + shift cross-entropy."""
        v1, v2, labels = self.two_views(x, generator)
        z, logits = self.net(torch.cat([v1, v2]))
        loss_sim = nt_xent(F.normalize(z, dim=1), 2, self.config.temperature)
        return loss_sim + F.cross_entropy(logits, labels.repeat(2))

    @torch.no_grad()
    def _fit_bank(self, train: Tensor) -> None:
        """Feature bank and score weights from the training images (computed once per fit, stored as buffers)."""
        parts = [self._ensemble(chunk.to(self.device)) for chunk in train.split(self._images_per_chunk())]
        zbar = torch.cat([p[0] for p in parts])  # [M, K, d]
        own = torch.cat([p[1] for p in parts])  # [M, K]
        self.feature_bank = F.normalize(zbar, dim=2).flatten(1)
        self.weight_sim = 1 / zbar.norm(dim=2).mean(0)
        self.weight_shi = shift_weights(own.mean(0))

    # ---------------------------------------------------------------------------------------------- scoring
    def _memory_bytes(self) -> float:
        """The score's memory budget: ``max_memory_mb``, else derived once per device (not on every score call,
        so that chunking does not follow the memory that happens to be free at that moment)."""
        if self.config.max_memory_mb is not None:
            return self.config.max_memory_mb * 2**20
        device = self.device
        if device not in self._derived_memory_bytes:
            self._derived_memory_bytes[device] = default_memory_mb(device) * 2**20
        return self._derived_memory_bytes[device]

    def _images_per_chunk(self) -> int:
        """Images whose T x K backbone passes fit the memory budget together (at least one)."""
        per_image = self._bytes_per_pass * self.passes_per_score
        return max(1, int(self._memory_bytes() // per_image))

    def _ensemble(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """zbar [n, K, d] (projection averaged over the T augmentations) and own-shift logits [n, K]."""
        n, t, k = x.shape[0], self.config.score_samples, self.shift.num_shifts
        views = [
            augment_view(x, self.shift, shift, self._eval_params[i][shift], crop=self.crop)
            for i in range(t)
            for shift in self._shifts()
        ]
        z, logits = self.net(torch.cat(views))
        zbar = z.view(t, k, n, -1).mean(0).transpose(0, 1)
        own = logits.view(t, k, n, k).mean(0).diagonal(dim1=0, dim2=2)
        return zbar, own

    def _normality_terms(self, x: Tensor) -> Tensor:
        """[n, 2]: the similarity and shift terms of the normality score (higher = more normal)."""
        zbar, own = self._ensemble(x)
        k = self.shift.num_shifts
        bank = self.feature_bank.view(self.feature_bank.shape[0], k, -1)
        rows = max(1, int(self._memory_bytes() // (BYTES_PER_FLOAT * AUTOGRAD_FACTOR * max(1, x.shape[0]))))
        sims = torch.stack([max_similarity(zbar[:, i], bank[:, i], rows) for i in self._shifts()], 1)
        return torch.stack([(sims * self.weight_sim).mean(1), (own * self.weight_shi).mean(1)], 1)

    def _chunked(self, x: Tensor, fn, columns: int) -> Tensor:
        """Apply per-sample ``fn`` (-> [n, columns]) in memory-sized chunks; with input gradients when needed."""
        if x.shape[0] == 0:
            return x.new_zeros(0, columns)
        chunk = self._images_per_chunk()
        if torch.is_grad_enabled() and x.requires_grad:
            return _PerSampleGradient.apply(x, fn, chunk)
        return torch.cat([fn(part) for part in x.split(chunk)])

    def score(self, x: Tensor) -> Tensor:
        """Negated ensemble normality score [N]; deterministic; input gradients in bounded memory."""
        return -self._chunked(x, lambda part: self._normality_terms(part).sum(1, keepdim=True), 1).view(-1)

    def score_components(self, x: Tensor) -> dict[str, Tensor]:
        """The two signed terms of the score (higher = more anomalous; they sum to ``score``)."""
        terms = -self._chunked(x, self._normality_terms, 2)
        return {"similarity": terms[:, 0], "shift": terms[:, 1]}

    def features(self, x: Tensor) -> Tensor:
        """[N, K * d]: zbar_k(x) / ||zbar_k(x)|| for every shift, concatenated: the space of ``feature_bank``.

        Normalised like the bank, so that a feature-space attack measures distances the similarity term sees (raw
        features would pull an anomaly's norms toward the bank's unit norms, and lower its similarity term).
        """
        parts = [F.normalize(self._ensemble(part)[0], dim=2).flatten(1) for part in x.split(self._images_per_chunk())]
        return torch.cat(parts)


@register_detector("csi")
class CSI(ShiftedContrastiveDetector):
    """CSI: shifted-instance contrastive learning (rotations) with the ensemble score; no adversarial training."""

    tiny_config: ClassVar[dict[str, Any]] = CSI_TINY
    citation: ClassVar[Citation | None] = Citation(
        title="CSI: Novelty Detection via Contrastive Learning on Distributionally Shifted Instances",
        venue="NeurIPS",
        year=2020,
        link="https://arxiv.org/abs/2007.08176",
        authors="Tack, Mo, Jeong & Shin",
    )
    paper_results: ClassVar[dict[str, PaperResult]] = cobra_results(
        cifar10=(94.3, 10.6),
        cifar100=(89.6, 11.9),
        mnist=(93.8, 3.4),
        fmnist=(92.7, 5.8),
        svhn=(96.8, 3.1),
        visa=(62.5, 0.3),
        mvtec=(63.8, 4.6),
    )
