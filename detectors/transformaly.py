"""Transformaly (Cohen & Avidan, CVPR-W 2022): ViT teacher-student block discrepancy + pretrained-feature density."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer

from bench.errors import UsageError
from bench.progress import NULL_PROGRESS, Progress
from detectors.base import Detector, DetectorConfig, register_detector
from detectors.common import PretrainedBackbone, embed, fit_minibatches, load_state_file, setup_seeded
from detectors.papers import Citation, PaperResult, cobra_results


@dataclass
class TransformalyConfig(DetectorConfig):
    """Transformaly options.

    weights_path: (required) a torchvision ``VisionTransformer`` state dict, e.g. ``vit_b_16``'s ImageNet weights;
        never downloaded. The architecture fields below must match it (defaults: ViT-B/16 at 224 px).
    first_block: the teacher-student discrepancy of blocks ``first_block .. num_layers - 1`` forms the fine-tuned
        feature vector (the official code uses blocks 2..11 of ViT-B's 12).
    kept_variance: the pretrained features are PCA-whitened, keeping the leading components that explain this
        fraction of the training variance (the official ``whitening_threshold``, 0.9).
    covariance_eps: added to every covariance eigenvalue, relative to their mean (keeps the densities finite).
    Training follows the official settings: Adam, lr 1e-4, batch 32, 30 epochs.
    """

    weights_path: str | None = None
    image_size: int = 224
    patch_size: int = 16
    num_layers: int = 12
    num_heads: int = 12
    hidden_dim: int = 768
    mlp_dim: int = 3072
    first_block: int = 2
    kept_variance: float = 0.9
    covariance_eps: float = 1e-6
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-4


class ViTTeacher(PretrainedBackbone):
    """A frozen torchvision ViT read from a local state dict; exposes every block's input and output tokens."""

    def __init__(self, config: TransformalyConfig) -> None:
        super().__init__(config.image_size)
        self.net = VisionTransformer(
            image_size=config.image_size,
            patch_size=config.patch_size,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            hidden_dim=config.hidden_dim,
            mlp_dim=config.mlp_dim,
        )
        self.net.heads = nn.Identity()  # the classifier is never used
        state = {k: v for k, v in load_state_file(config.weights_path).items() if not k.startswith("heads.")}
        try:
            self.net.load_state_dict(state)
        except RuntimeError as error:
            raise UsageError(
                f"{config.weights_path} does not fit a torchvision VisionTransformer with image_size="
                f"{config.image_size}, patch_size={config.patch_size}, num_layers={config.num_layers}, num_heads="
                f"{config.num_heads}, hidden_dim={config.hidden_dim}, mlp_dim={config.mlp_dim}: "
                f"{str(error).splitlines()[0]}"
            ) from None
        self.freeze()

    def hidden_states(self, x: Tensor) -> list[Tensor]:
        """Token sequences [N, S, D] entering block 0 and leaving each block (``num_layers + 1`` entries)."""
        net = self.net
        tokens = net._process_input(self.prepare(x))
        tokens = torch.cat([net.class_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        states = [net.encoder.dropout(tokens + net.encoder.pos_embedding)]
        for block in net.encoder.layers:
            states.append(block(states[-1]))
        return states

    def class_feature(self, last_state: Tensor) -> Tensor:
        """The pretrained image feature [N, D]: the normalised class token after the last block."""
        return self.net.encoder.ln(last_state)[:, 0]

    def pooled(self, x: Tensor) -> Tensor:
        return self.class_feature(self.hidden_states(x)[-1])


def whitening(features: Tensor, kept_variance: float, eps: float) -> tuple[Tensor, Tensor]:
    """Mean [D] and projection [D, K] such that ``||(f - mean) @ projection||^2`` is the Mahalanobis distance of a
    Gaussian fitted to ``features`` [N, D], restricted to the K leading principal components explaining
    ``kept_variance`` of the variance (all of them, null directions included, when it is 1); every eigenvalue gets
    ``eps`` x their mean added."""
    data = features.double()
    mean = data.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(data.T, correction=0).reshape(data.shape[1], -1))
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp_min(0.0), eigenvectors.flip(1)
    explained = eigenvalues.cumsum(0) / eigenvalues.sum().clamp_min(torch.finfo(data.dtype).tiny)
    kept = data.shape[1] if kept_variance >= 1 else min(int((explained < kept_variance).sum()) + 1, data.shape[1])
    scale = (eigenvalues[:kept] + eps * eigenvalues.mean().clamp_min(torch.finfo(torch.float32).tiny)).rsqrt()
    return mean.float(), (eigenvectors[:, :kept] * scale).float()


def mahalanobis(features: Tensor, mean: Tensor, projection: Tensor) -> Tensor:
    """Squared whitened distances [N] (differentiable w.r.t. ``features``)."""
    if mean.numel() == 0:
        raise RuntimeError("transformaly is not fitted: fit it (or load its state) before scoring")
    return ((features - mean) @ projection).pow(2).sum(1)


@register_detector("transformaly")
class Transformaly(Detector):
    """Transformaly (Cohen & Avidan, CVPR-W 2022): ViT teacher-student discrepancy + pretrained Gaussian score.

    The teacher is a frozen pretrained torchvision ViT read from ``weights_path`` (required: no ViT weights ship
    offline). For each scored block i (``first_block`` onwards) a student block of the same architecture receives
    the teacher's input to block i and is trained on normal images only to reproduce the teacher's output of
    block i (MSE over tokens and channels; Adam). An image gets two feature vectors: the pretrained one (the
    teacher's normalised class token) and the fine-tuned one (per-block mean squared teacher-student
    discrepancy). As in the official evaluation, a Gaussian is fitted to each over the training images (the
    pretrained features PCA-whitened to ``kept_variance``) and the anomaly score is the negated sum of the two
    log-likelihoods, up to an additive constant: ``0.5 * (Mahalanobis_pretrained + Mahalanobis_finetuned)``.
    Images are resized to ``image_size``, grey repeated to RGB and ImageNet-normalised inside; the score is
    differentiable end to end.

    Differences from the official code: the teacher is a torchvision ViT (the official one is lukemelas'
    ViT-B/16 fine-tuned on ImageNet-1k at 384 px); only the scored blocks get a student (the official code trains
    students for all blocks but scores blocks 2..11; each student block's loss is independent of the others);
    student blocks start from a seeded random initialisation (an exact copy of the teacher block would reproduce
    it exactly and receive no gradient); no early stopping on a validation split (the last epoch is kept); the
    Gaussians are closed-form (mean, covariance with a relative eigenvalue floor) instead of scikit-learn's
    one-component GaussianMixture.
    """

    Config = TransformalyConfig
    tiny_config: ClassVar[dict[str, Any]] = {
        "image_size": 32,
        "patch_size": 8,
        "num_layers": 2,
        "num_heads": 2,
        "hidden_dim": 32,
        "mlp_dim": 64,
        "epochs": 3,
        "first_block": 0,
    }
    citation: ClassVar[Citation | None] = Citation(
        title="Transformaly - Two (Feature Spaces) Are Better Than One",
        venue="CVPR Workshops",
        year=2022,
        link="https://arxiv.org/abs/2112.04185",
        authors="Cohen & Avidan",
    )
    paper_results: ClassVar[dict[str, PaperResult]] = cobra_results(
        cifar10=(98.3, 3.7),
        cifar100=(97.3, 9.4),
        mnist=(94.8, 7.9),
        fmnist=(94.4, 7.4),
        svhn=(56.9, 0.9),
        visa=(85.5, 0.0),
        mvtec=(88.5, 2.2),
    )

    def check_requirements(self) -> None:
        cfg = self.config
        if cfg.weights_path is None:
            raise UsageError(
                "transformaly needs weights_path=<file>: a torchvision VisionTransformer state dict (e.g. "
                "vit_b_16's ImageNet weights; set image_size/patch_size/num_layers/num_heads/hidden_dim/mlp_dim "
                "for other ViTs); none ships offline"
            )
        if not Path(cfg.weights_path).is_file():
            raise UsageError(f"weights file not found: {cfg.weights_path}")
        if not 0 <= cfg.first_block < cfg.num_layers:
            raise UsageError(f"transformaly first_block must be in [0, {cfg.num_layers}), got {cfg.first_block}")

    @property
    def scored_blocks(self) -> range:
        """Indices of the teacher blocks whose discrepancy is scored."""
        return range(self.config.first_block, self.config.num_layers)

    def build(self, input_shape: tuple[int, int, int]) -> None:
        self.check_requirements()
        cfg = self.config
        self.teacher = ViTTeacher(cfg)
        self.student = nn.ModuleList(
            EncoderBlock(cfg.num_heads, cfg.hidden_dim, cfg.mlp_dim, dropout=0.0, attention_dropout=0.0)
            for _ in self.scored_blocks
        )
        for name in ("pretrained_mean", "finetuned_mean"):
            self.register_buffer(name, torch.zeros(0))
        for name in ("pretrained_projection", "finetuned_projection"):
            self.register_buffer(name, torch.zeros(0, 0))

    def _discrepancy(self, states: list[Tensor]) -> Tensor:
        """Per-block mean squared student-teacher difference [N, B] from the teacher's hidden states."""
        errors = [
            (student(states[i]) - states[i + 1]).pow(2).mean((1, 2))
            for i, student in zip(self.scored_blocks, self.student, strict=True)
        ]
        return torch.stack(errors, dim=1)

    def _pretrained_and_finetuned(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The pretrained features [N, D] and the fine-tuned (discrepancy) features [N, B] of images ``x``."""
        states = self.teacher.hidden_states(x)
        return self.teacher.class_feature(states[-1]), self._discrepancy(states)

    def features(self, x: Tensor) -> Tensor:
        return torch.cat(self._pretrained_and_finetuned(x), dim=1)

    def score(self, x: Tensor) -> Tensor:
        pretrained, finetuned = self._pretrained_and_finetuned(x)
        pretrained_term = mahalanobis(pretrained, self.pretrained_mean, self.pretrained_projection)
        finetuned_term = mahalanobis(finetuned, self.finetuned_mean, self.finetuned_projection)
        return 0.5 * (pretrained_term + finetuned_term)

    def _distillation_loss(self, batch: Tensor) -> Tensor:
        with torch.no_grad():
            states = self.teacher.hidden_states(batch)
        return self._discrepancy(states).mean()

    def fit(
        self,
        train: Tensor,
        *,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> Transformaly:
        generator = setup_seeded(self, train, device, generator)
        self.train()
        fit_minibatches(
            self._distillation_loss,
            self.student.parameters(),
            train,
            config=self.config,
            device=device,
            generator=generator,
            progress=progress,
            description=f"fit {self.name}",
        )
        self.eval()
        bank = embed(self.features, train, self.config.score_batch_size, device)
        pretrained, finetuned = bank.split([self.config.hidden_dim, len(self.scored_blocks)], dim=1)
        eps = self.config.covariance_eps
        self.pretrained_mean, self.pretrained_projection = whitening(pretrained, self.config.kept_variance, eps)
        self.finetuned_mean, self.finetuned_projection = whitening(finetuned, 1.0, eps)
        return self
