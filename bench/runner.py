"""Runs one fit group: fit the detector (or load it from the cache), then each of its attack cells.

Every finished cell is appended to the store at once, so an interrupted run loses nothing finished. A failure
(an exception, NaN/inf scores, out of memory) becomes a ``status: failed`` record carrying the error text, and
the group goes on with its next cell.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from attacks.base import AttackNotApplicable, AttackResult
from bench.cache import CheckpointCache, fit_key
from bench.data import load_split
from bench.grid import EvalJob, FitGroup
from bench.hashing import stable_hash
from bench.metrics import auroc
from bench.progress import NULL_PROGRESS, Progress
from bench.sanity import attack_steps, cell_flags
from bench.store import Record, RunStore

N_EXAMPLES = 4  # clean/adversarial example images kept per group (normal and anomalous) for the plots


def generator_for(*parts: Any) -> torch.Generator:
    """A CPU generator seeded from a stable hash of ``parts`` (independent of execution order)."""
    return torch.Generator().manual_seed(int(stable_hash(list(parts), 15), 16))


@dataclass
class GroupResult:
    """What a fit group produced: its records and how many cells were skipped as already finished."""

    records: list[Record] = field(default_factory=list)
    skipped: int = 0
    fitted: bool = False


def check_scores(scores: torch.Tensor, what: str) -> np.ndarray:
    """Scores as float64 numpy, raising on NaN/inf."""
    array = scores.detach().cpu().double().numpy()
    if not np.isfinite(array).all():
        raise FloatingPointError(f"{what} scores contain NaN or inf ({int((~np.isfinite(array)).sum())} samples)")
    return array


def new_record(job: EvalJob, split_meta: dict[str, Any] | None) -> Record:
    """A cell's record with the fields known before it runs."""
    fit = job.fit
    return Record(
        dataset=fit.dataset, normal_class=fit.normal_class, detector=fit.detector, seed=fit.seed, attack=job.attack,
        norm=job.norm, eps=job.eps, key=job.key, seed_key=job.seed_key, preset=fit.preset,
        class_name=(split_meta or {}).get("class_name", str(fit.normal_class)),
    )  # fmt: skip


def failed(record: Record, error: BaseException) -> Record:
    """``record`` marked failed, with a one-line error and the traceback's last frame, and no numbers."""
    frame = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" at {frame[0].filename}:{frame[0].lineno}" if frame else ""
    text = f"{type(error).__name__}: {error}{where}"
    return dataclasses.replace(record, status="failed", error=text, clean_auroc=None, robust_auroc=None)


def failed_records(jobs: list[EvalJob], error: BaseException) -> list[Record]:
    """Failed records for cells that never ran (their fit failed, or their worker died)."""
    return [failed(new_record(job, None), error) for job in jobs]


def run_group(
    group: FitGroup,
    store: RunStore,
    *,
    finished: set[str],
    device: str = "cpu",
    cache: CheckpointCache | None = None,
    force: bool = False,
    progress: Progress = NULL_PROGRESS,
    part: str | None = None,
) -> GroupResult:
    """Fit (or load) the group's detector and run its cells not in ``finished``, appending each record."""
    cache = cache or CheckpointCache()
    todo = group.evals if force else [job for job in group.evals if job.key not in finished]
    result = GroupResult(skipped=len(group.evals) - len(todo))
    if not todo:
        return result
    try:
        split, detector, fit_seconds, result.fitted, fkey = prepare_detector(group, device, cache, force, progress)
        clean = check_scores(detector.score_batched(split.test), "clean")
        clean_auroc = auroc(clean, split.test_is_anomaly.numpy())
    except Exception as error:
        result.records = failed_records(todo, error)
        for record in result.records:
            store.append_record(record, part)
        return result
    for job in todo:
        record = dataclasses.replace(
            new_record(job, split.meta),
            fit_key=fkey,
            fit_seconds=fit_seconds,
            clean_auroc=clean_auroc,
            n_normal=int((~split.test_is_anomaly).sum()),
            n_anomaly=int(split.test_is_anomaly.sum()),
        )
        try:
            record = dataclasses.replace(record, **run_cell(job, detector, split, clean, store, progress))
        except AttackNotApplicable as error:
            record = dataclasses.replace(record, status="not-applicable", error=str(error))
        except Exception as error:
            record = failed(record, error)
        store.append_record(record, part)
        result.records.append(record)
    return result


def prepare_detector(group: FitGroup, device: str, cache: CheckpointCache, force: bool, progress: Progress):
    """Load the split, then fit the detector or restore it from the checkpoint cache."""
    fit = group.fit
    split = load_split(fit.dataset, fit.normal_class, fit.data_root, fit.seed, **fit.data_kwargs)
    detector = fit.build_detector()
    key = fit_key(detector, split, fit.seed)
    if key in cache and not force:
        return split, detector, cache.load(key, detector, device), False, key
    generator = generator_for("fit", fit.seed, detector.config.train_seed)
    start = time.perf_counter()
    detector.fit(split.train, device=device, generator=generator, progress=progress)
    fit_seconds = time.perf_counter() - start
    detector.eval()
    cache.save(key, detector, fit_seconds)
    return split, detector, fit_seconds, True, key


def run_cell(
    job: EvalJob, detector: Any, split: Any, clean: np.ndarray, store: RunStore, progress: Progress
) -> dict[str, Any]:
    """Attack the test set, score it (reusing the scores the attack tracked), save per-sample scores; returns the
    record's measured fields."""
    attack = job.build_attack()
    is_anomaly = split.test_is_anomaly
    seed_key = job.seed_key

    def attack_and_score() -> tuple[AttackResult, float, np.ndarray]:
        start = time.perf_counter()
        result = attack.run(detector, split.test, is_anomaly, generator=generator_for("attack", seed_key))
        attack_seconds = time.perf_counter() - start
        return (
            result,
            attack_seconds,
            check_scores(result.completed_scores(detector, torch.as_tensor(clean)), "adversarial"),
        )

    result, attack_seconds, adv = halving_batches_on_oom(attack_and_score, attack, detector)
    x_adv = result.x_adv
    examples = example_indices(is_anomaly)
    store.save_scores(
        job.key,
        clean=clean,
        adv=adv,
        is_anomaly=is_anomaly.numpy(),
        examples_clean=split.test[examples].half().numpy(),
        examples_adv=x_adv[examples].half().numpy(),
    )
    passes = getattr(detector, "passes_per_score", 1)
    flags = cell_flags(
        detector, attack, split.test, is_anomaly, clean, adv, generator=generator_for("sanity", seed_key), result=result
    )
    return {
        "robust_auroc": auroc(adv, is_anomaly.numpy()),
        **member_fields(result, clean, is_anomaly.numpy()),
        "attack_seconds": attack_seconds,
        "score_forwards": attack.passes.forward,
        "score_backwards": attack.passes.backward,
        "backbone_passes": (attack.passes.forward + attack.passes.backward) * passes,
        "steps": attack_steps(attack),
        "flags": flags,
    }


def member_fields(result: AttackResult, clean: np.ndarray, is_anomaly: np.ndarray) -> dict[str, Any]:
    """An ensemble's per-member results for its record: each member's robust AUROC, the share of samples whose
    worst case it supplied and whether it is white-box; the skipped members with their reasons."""
    if not result.members:
        return {}
    members = []
    completed = result.member_scores(torch.as_tensor(clean))
    for index, member in enumerate(result.members):
        scores = completed[member.name]
        supplied = float((result.supplier == index).float().mean()) if result.supplier is not None else 0.0
        finite = bool(torch.isfinite(scores).all())  # a member that met NaN scores gets no number
        members.append(
            {
                "attack": member.name,
                "robust_auroc": auroc(scores.double().numpy(), is_anomaly) if finite else None,
                "share": supplied,
                "white_box": member.white_box,
            }
        )
    skipped = [{"attack": name, "reason": reason} for name, reason in result.skipped.items()]
    return {"members": members, "skipped_members": skipped}


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA out-of-memory error, or a CPU allocation failure."""
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    )


def halving_batches_on_oom(fn: Any, attack: Any, detector: Any) -> Any:
    """``fn()``, retried after each out-of-memory with the attack's ``batch_size`` and the detector's
    ``score_batch_size`` halved (pass counts restart), until both are 1; then the error is raised."""
    while True:
        try:
            return fn()
        except Exception as error:
            sizes = (attack.config.batch_size, detector.config.score_batch_size)
            if not is_out_of_memory(error) or sizes == (1, 1):
                raise
        attack.config.batch_size, detector.config.score_batch_size = (max(1, size // 2) for size in sizes)
        attack.passes.forward = attack.passes.backward = 0
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def example_indices(is_anomaly: torch.Tensor) -> torch.Tensor:
    """The first few normal and anomalous test indices."""
    normal = torch.nonzero(~is_anomaly).flatten()[:N_EXAMPLES]
    anomalous = torch.nonzero(is_anomaly).flatten()[:N_EXAMPLES]
    return torch.cat([normal, anomalous])
