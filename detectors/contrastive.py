"""Contrastive losses of CSI and COBRA (released ``training/contrastive_loss.py``, ``adv_training/loss.py``) and
the shift-chunk permutation that pairs COBRA's opposite views."""

from __future__ import annotations

import torch
from torch import Tensor


def nt_xent(z: Tensor, chunks: int, temperature: float = 0.5) -> Tensor:
    """Multi-positive NT-Xent of the released ``training/contrastive_loss.py`` (z L2-normalised rows).

    ``z`` stacks ``chunks`` blocks of B rows; row i of every block is a positive of row i of every other block;
    every other off-diagonal entry is a negative. The sum over the chunks*(chunks-1) positive pairs is divided
    by chunks*B.
    """
    total = z.shape[0]
    b = total // chunks
    eye = torch.eye(total, device=z.device, dtype=z.dtype)
    sim = torch.exp(z @ z.t() / temperature) * (1 - eye)
    loss = -torch.log(sim / (sim.sum(1, keepdim=True) + 1e-8) + 1e-8)
    blocks = loss.view(chunks, b, chunks, b).diagonal(dim1=1, dim2=3)  # [chunks, chunks, b]
    off_diagonal = 1 - torch.eye(chunks, device=z.device, dtype=z.dtype)
    return (blocks * off_diagonal[:, :, None]).sum() / total


def pairwise_nt_xent(z: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent of ``adv_training/loss.py`` used by the inner attacks: [x; target] rows, columns detached."""
    z = z / (z.norm(dim=1, keepdim=True) + 1e-8)
    return nt_xent_columns_detached(z, temperature)


def nt_xent_columns_detached(z: Tensor, temperature: float) -> Tensor:
    """Two-chunk NT-Xent with the similarity's right operand detached (as the released attack loss)."""
    total = z.shape[0]
    n = total // 2
    sim = torch.exp(z @ z.detach().t() / temperature) * (1 - torch.eye(total, device=z.device, dtype=z.dtype))
    loss = -torch.log(sim / (sim.sum(1, keepdim=True) + 1e-8) + 1e-8)
    return (loss[:n, n:].diagonal().sum() + loss[n:, :n].diagonal().sum()) / total


def sattolo_permutation(k: int, generator: torch.Generator) -> list[int]:
    """A random cyclic permutation of range(k) (a derangement), drawn like the released ATNT chunk shuffle."""
    order = list(range(k))
    for i in range(k - 1):
        pick = int(torch.randint(i + 1, k, (1,), generator=generator))
        order[i], order[pick] = order[pick], order[i]
    return order
