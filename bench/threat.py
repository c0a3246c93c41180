"""The threat model: the norms an attack budget is measured in and the paper's budget per dataset kind."""

from __future__ import annotations

from bench.errors import UsageError

NORMS = ("linf", "l2")
#: The eps that stands for the paper's threat model per dataset kind (see ``KIND_EPS``).
AUTO_EPS = "auto"
#: The paper's L-inf budget per dataset kind: 4/255 on low-resolution sets, 2/255 on high-resolution and
#: industrial ones (MVTec, VisA, textures); keyed by the dataset's ``low_res`` flag.
KIND_EPS = {True: 4 / 255, False: 2 / 255}


def parse_norm(norm: str) -> str:
    """Validate the threat model's norm."""
    if norm not in NORMS:
        raise UsageError(f"unknown norm {norm!r}; choose from: {', '.join(NORMS)}")
    return norm


def kind_eps(low_res: bool) -> float:
    """The paper's budget for a dataset of this kind (``KIND_EPS``)."""
    return KIND_EPS[bool(low_res)]
