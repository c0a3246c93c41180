"""White-box attacks on analytic toys: closed forms, budgets, eps=0, monotonicity, seeding, EOT."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_attack_toys import (  # noqa: F401 - single_thread is an autouse fixture
    LinearScorer,
    MLPScorer,
    NoisyLinearScorer,
    QuadraticScorer,
    TwoTermScorer,
    auroc,
    linear_optimum,
    single_thread,
    toy_data,
)

from attacks import create_attack, list_attacks
from attacks.common import objective_sign
from attacks.registry import ATTACKS
from bench.errors import UsageError

WHITE_BOX = ["fgsm", "pgd", "apgd", "apgd-margin", "autoattack"]


def run(name: str, det, x, is_anomaly, seed: int = 0, **kwargs):
    if name == "apgd-margin":
        name, kwargs = "apgd", {**kwargs, "loss": "margin"}
    if name == "autoattack":
        kwargs = {"square_queries": 300, **kwargs}
    attack = create_attack(name, **kwargs)
    return attack.perturb(det, x, is_anomaly, generator=torch.Generator().manual_seed(seed)), attack


@pytest.fixture(scope="module")
def linear():
    w = torch.randn(16, generator=torch.Generator().manual_seed(3))
    x, is_anomaly = toy_data()
    return LinearScorer(w), x, is_anomaly, w


@pytest.mark.parametrize("name", WHITE_BOX)
def test_linear_linf_closed_form(name, linear) -> None:
    det, x, is_anomaly, w = linear
    x_adv, _ = run(name, det, x, is_anomaly, eps=0.1, norm="linf")
    assert (x_adv - linear_optimum(x, is_anomaly, w, 0.1, "linf")).abs().max() < 1e-6


@pytest.mark.parametrize(
    ("name", "options", "tol"),
    [
        ("pgd", {"random_start": False}, 1e-6),
        ("apgd", {"random_start": False}, 1e-6),
        ("apgd", {}, 2e-4),  # from a random start the angle to w shrinks geometrically: float32-limited
        ("apgd-margin", {}, 2e-4),
    ],
)
def test_linear_l2_closed_form(name, options, tol) -> None:
    w = torch.randn(16, generator=torch.Generator().manual_seed(4))
    x, is_anomaly = toy_data(low=0.3, high=0.7)
    det = LinearScorer(w)
    x_adv, _ = run(name, det, x, is_anomaly, eps=0.2, norm="l2", **options)
    assert (x_adv - linear_optimum(x, is_anomaly, w, 0.2, "l2")).abs().max() < tol


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_apgd_reaches_convex_optimum(norm, loss) -> None:
    """Anomalies minimise ||x' - mu||^2: the optimum is the projection of mu onto the ball (inside [0, 1])."""
    x, _ = toy_data(low=0.2, high=0.8)
    mu = torch.rand(16, generator=torch.Generator().manual_seed(9)).view(1, 1, 4, 4)
    is_anomaly = torch.ones(x.shape[0], dtype=torch.bool)
    det = QuadraticScorer(mu)
    eps = 0.1 if norm == "linf" else 0.3
    x_adv, _ = run("apgd", det, x, is_anomaly, eps=eps, norm=norm, loss=loss)
    if norm == "linf":
        optimum = torch.minimum(torch.maximum(mu, x - eps), x + eps)
    else:
        gap = mu - x
        dist = gap.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        optimum = x + gap * (eps / dist).clamp(max=1.0)
    assert (det.score(x_adv) - det.score(optimum)).abs().max() < 1e-3


def test_apgd_step_schedule_checkpoints() -> None:
    from attacks.apgd import checkpoints

    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("name", WHITE_BOX)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_stays_in_ball_and_box(name, norm) -> None:
    x, is_anomaly = toy_data(shape=(1, 6, 6))
    det = MLPScorer(36)
    eps = 0.3 if norm == "linf" else 1.0
    x_adv, _ = run(name, det, x, is_anomaly, eps=eps, norm=norm)
    delta = (x_adv - x).flatten(1)
    dist = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert dist.max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("name", WHITE_BOX)
def test_eps_zero_is_identity(name) -> None:
    x, is_anomaly = toy_data(shape=(1, 6, 6))
    det = MLPScorer(36)
    x_adv, _ = run(name, det, x, is_anomaly, eps=0.0)
    assert torch.equal(x_adv, x)
    assert torch.equal(det.score(x_adv), det.score(x))


@pytest.mark.parametrize("name", WHITE_BOX)
def test_more_eps_never_raises_robust_auroc(name) -> None:
    mu = torch.full((16,), 0.5)
    x, is_anomaly = toy_data()
    det = QuadraticScorer(mu)
    aurocs = [auroc(det.score(run(name, det, x, is_anomaly, eps=e)[0]), is_anomaly) for e in (0, 0.02, 0.05, 0.1)]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(aurocs)), aurocs
    assert aurocs[-1] < aurocs[0]


@pytest.mark.parametrize("name", WHITE_BOX)
def test_same_seed_same_output(name) -> None:
    x, is_anomaly = toy_data(shape=(1, 6, 6))
    det = MLPScorer(36)
    a, _ = run(name, det, x, is_anomaly, seed=5, eps=0.1)
    b, _ = run(name, det, x, is_anomaly, seed=5, eps=0.1)
    assert torch.equal(a, b)


def test_pgd_seed_changes_random_start() -> None:
    x, is_anomaly = toy_data(shape=(1, 6, 6))
    det = MLPScorer(36)
    a, _ = run("pgd", det, x, is_anomaly, seed=1, eps=0.1, steps=1)
    b, _ = run("pgd", det, x, is_anomaly, seed=2, eps=0.1, steps=1)
    assert not torch.equal(a, b)


def test_pgd_cost_is_one_pass_per_step_plus_final_forward() -> None:
    x, is_anomaly = toy_data(n=10)
    det = MLPScorer(16)
    _, attack = run("pgd", det, x, is_anomaly, eps=0.1, steps=7, restarts=2)
    assert attack.passes.backward == 10 * 7 * 2
    assert attack.passes.forward == 10 + 10 * (7 + 1) * 2  # + the clean forward that competes with the random starts
    _, attack = run("apgd", det, x, is_anomaly, eps=0.1, steps=7, restarts=2)
    assert attack.passes.backward == 10 * 7 * 2
    assert attack.passes.forward == 10 + 10 * (7 + 1) * 2  # + the clean forward (centres the loss, competes)


def test_pgd_restarts_never_hurt() -> None:
    x, is_anomaly = toy_data(shape=(1, 6, 6))
    det = MLPScorer(36, seed=2)
    sign = objective_sign(is_anomaly)
    one, _ = run("pgd", det, x, is_anomaly, seed=0, eps=0.2, steps=3, restarts=1)
    many, _ = run("pgd", det, x, is_anomaly, seed=0, eps=0.2, steps=3, restarts=4)
    assert (sign * det.score(many) >= sign * det.score(one) - 1e-6).all()


def test_best_iterate_is_kept_not_last() -> None:
    """A huge step overshoots on a concave bump; the best iterate (here: the clean input) must be returned."""

    class Bump(LinearScorer):
        def score(self, x):
            return -((x.flatten(1) - 0.5) ** 2).sum(1)

    x = torch.full((2, 1, 2, 2), 0.5)
    is_anomaly = torch.tensor([False, False])
    x_adv, _ = run("pgd", Bump(torch.ones(4)), x, is_anomaly, eps=0.3, random_start=False, steps=2)
    assert torch.equal(x_adv, x)


@pytest.mark.parametrize("name", ["pgd", "apgd-margin"])
def test_eot_beats_single_draw_on_stochastic_detector(name) -> None:
    """EOT averages gradients over draws. (APGD-ce is excluded: E[grad softplus] favours draws whose noise
    flips the score's sign on this toy, a property of EOT on a saturating loss, not of the mechanism.)"""
    w = torch.randn(16, generator=torch.Generator().manual_seed(7))
    x, is_anomaly = toy_data(low=0.2, high=0.8)
    sign = objective_sign(is_anomaly)
    gains = {}
    for eot in (1, 20):
        det = NoisyLinearScorer(w, seed=0)
        x_adv, attack = run(name, det, x, is_anomaly, eps=0.1, steps=20, eot_iter=eot)
        gains[eot] = float((sign * ((x_adv - x).flatten(1) @ w)).mean())
        assert attack.passes.backward == x.shape[0] * 20 * eot  # EOT: eot_iter gradient draws per step
    optimum = float((sign * ((linear_optimum(x, is_anomaly, w, 0.1, "linf") - x).flatten(1) @ w)).mean())
    assert gains[20] > 0.95 * optimum
    assert gains[20] > gains[1]


def test_one_sided_names() -> None:
    x, is_anomaly = toy_data()
    det = MLPScorer(16)
    x_in, attack = run("pgd-in", det, x, is_anomaly, eps=0.1)
    assert attack.config.side == "in" and attack.label == "pgd-in"
    assert torch.equal(x_in[is_anomaly], x[is_anomaly]) and not torch.equal(x_in[~is_anomaly], x[~is_anomaly])
    x_out, _ = run("pgd-out", det, x, is_anomaly, eps=0.1)
    assert torch.equal(x_out[~is_anomaly], x[~is_anomaly])
    assert ATTACKS.expand("pgd-in,pgd") == ["pgd-in", "pgd"]
    assert "pgd-out" in ATTACKS.expand("*-out")
    assert "pgd-in" not in ATTACKS.expand("all") and "pgd" in ATTACKS.expand("all")
    assert "ta-pgd" not in ATTACKS.expand("all") and ATTACKS.expand("ta-*")[0] == "ta-apgd"
    assert "pgd-in" in list_attacks()["pgd"]
    with pytest.raises(UsageError):
        create_attack("pgd-in", side="out")
    with pytest.raises(UsageError):
        create_attack("nope-in")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_budget_seed_and_eps_zero(norm) -> None:
    x, is_anomaly = toy_data(shape=(1, 8, 8))
    det = MLPScorer(64)
    eps = 0.1 if norm == "linf" else 0.5
    a, attack = run("square", det, x, is_anomaly, seed=3, eps=eps, norm=norm, queries=100)
    b, _ = run("square", det, x, is_anomaly, seed=3, eps=eps, norm=norm, queries=100)
    assert torch.equal(a, b)
    assert attack.passes.forward == x.shape[0] * (100 + 1) and attack.passes.backward == 0
    delta = (a - x).flatten(1)
    dist = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert dist.max() <= eps + 1e-6 and a.min() >= 0 and a.max() <= 1
    sign = objective_sign(is_anomaly)
    assert (sign * det.score(a) >= sign * det.score(x)).all()
    assert auroc(det.score(a), is_anomaly) < auroc(det.score(x), is_anomaly)
    assert torch.equal(run("square", det, x, is_anomaly, eps=0.0, norm=norm)[0], x)


def test_square_finds_linear_vertex() -> None:
    w = torch.randn(16, generator=torch.Generator().manual_seed(3))
    x, is_anomaly = toy_data()
    x_adv, _ = run("square", LinearScorer(w), x, is_anomaly, eps=0.1, queries=400)
    assert (x_adv - linear_optimum(x, is_anomaly, w, 0.1, "linf")).abs().max() < 1e-6


AA_FAST = {"apgd_steps": 20, "square_queries": 100, "targets": 3}


def run_result(name: str, det, x, is_anomaly, seed: int = 0, **kwargs):
    attack = create_attack(name, **kwargs)
    return attack.run(det, x, is_anomaly, generator=torch.Generator().manual_seed(seed)), attack


def test_autoattack_is_per_sample_worst_case_of_its_members() -> None:
    """Per sample, the ensemble's output is its best member's output, judged by the true score."""
    gen = torch.Generator().manual_seed(0)
    x, is_anomaly = toy_data(shape=(1, 6, 6), n=30)
    det = TwoTermScorer(torch.randn(36, generator=gen), 3 * torch.randn(36, generator=gen))
    result, _ = run_result("autoattack", det, x, is_anomaly, seed=2, eps=0.05, batch_size=16, **AA_FAST)
    assert [m.name for m in result.members] == ["apgd", "apgd-linear", "apgd-soft", "square"]
    assert set(result.skipped) == {"apgd-t"} and "feature_bank" in result.skipped["apgd-t"]
    sign = objective_sign(is_anomaly)
    member_objectives = torch.stack([sign * m.scores for m in result.members])
    assert torch.allclose(sign * result.scores, member_objectives.max(0).values)
    assert torch.equal(result.supplier, member_objectives.argmax(0))
    assert torch.allclose(result.scores, det.score(result.x_adv), atol=1e-5)
    ensemble = auroc(result.scores, is_anomaly)
    assert all(ensemble <= auroc(m.scores, is_anomaly) for m in result.members)


def test_autoattack_members_differ_and_have_distinct_seeds() -> None:
    """No two members are one attack: their outputs differ (torch.equal is False for every pair)."""
    gen = torch.Generator().manual_seed(1)
    x, is_anomaly = toy_data(shape=(1, 6, 6), n=30)
    det = TwoTermScorer(torch.randn(36, generator=gen), 3 * torch.randn(36, generator=gen))
    attack = create_attack("autoattack", eps=0.05, **AA_FAST)
    members, _ = attack.members(det, x)
    outputs = {}
    for name, member in members.items():
        generator = attack_generator(2, name)
        outputs[name] = member.perturb(det, x, is_anomaly, generator=generator)
    for a, b in itertools.combinations(outputs, 2):
        assert not torch.equal(outputs[a], outputs[b]), (a, b)


def attack_generator(seed: int, name: str) -> torch.Generator:
    from attacks.autoattack import member_generator

    return member_generator(seed, name, "cpu")


def test_autoattack_unit_linf_ball_breaks_a_differentiable_toy() -> None:
    x, is_anomaly = toy_data(shape=(1, 6, 6), n=30)
    det = MLPScorer(36, seed=5)
    x_adv, _ = run("autoattack", det, x, is_anomaly, eps=1.0, **AA_FAST)
    assert auroc(det.score(x_adv), is_anomaly) <= 0.01


def test_autoattack_versions() -> None:
    w = torch.randn(16, generator=torch.Generator().manual_seed(7))
    noisy, clean = NoisyLinearScorer(w), LinearScorer(w)
    x, _ = toy_data(n=4)
    attack = create_attack("autoattack", eps=0.1, **AA_FAST)
    assert attack.resolve_version(clean) == "standard" and attack.resolve_version(noisy) == "rand"
    rand_members, _ = attack.members(noisy, x)
    assert "square" not in rand_members and attack.eot_draws(noisy) == 20
    assert all(m.config.eot_iter == 20 for m in rand_members.values())
    plus = create_attack("autoattack", eps=0.1, version="plus", **AA_FAST)
    plus_members, _ = plus.members(clean, x)
    assert plus_members["apgd"].config.restarts == 5
    assert plus_members["square"].config.queries == 200
    with pytest.raises(UsageError):
        create_attack("autoattack", version="fast")


def test_autoattack_plus_restarts_start_apart() -> None:
    """plus restarts draw distinct random starts: more restarts never weaken and here strictly help."""
    x, is_anomaly = toy_data(shape=(1, 6, 6), n=30)
    det = MLPScorer(36, seed=4)
    budget = {"eps": 0.05, "apgd_steps": 5, "square_queries": 10}
    standard, _ = run_result("autoattack", det, x, is_anomaly, seed=3, version="standard", **budget)
    plus, _ = run_result("autoattack", det, x, is_anomaly, seed=3, version="plus", plus_query_factor=1, **budget)
    sign = objective_sign(is_anomaly)
    assert (sign * plus.members[0].scores >= sign * standard.members[0].scores - 1e-6).sum() > 25


def test_autoattack_cost_adds_up_members() -> None:
    x, is_anomaly = toy_data(n=8)
    _, attack = run("autoattack", LinearScorer(torch.ones(16)), x, is_anomaly, eps=0.1, **AA_FAST)
    apgd = 8 * (1 + 20 + 1)  # clean centring forward + 20 steps + final forward
    square = 8 * (1 + 100)
    assert attack.passes.backward == 8 * 20
    assert attack.passes.forward == apgd + square  # members are merged on their own tracked objectives


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd", "square", "autoattack"])
def test_every_attack_averages_eot_draws_on_stochastic_detectors(name) -> None:
    """Each objective evaluation of a stochastic detector costs eot_iter draws; deterministic ones cost one."""
    w = torch.randn(16, generator=torch.Generator().manual_seed(7))
    x, is_anomaly = toy_data(n=6)
    budget = {"square": {"queries": 20}, "autoattack": {"version": "standard", **AA_FAST}}.get(name, {})
    costs = {}
    for det in (LinearScorer(w), NoisyLinearScorer(w)):
        _, attack = run(name, det, x, is_anomaly, eps=0.1, eot_iter=3, **budget)
        costs[det.stochastic] = (attack.passes.forward, attack.passes.backward)
    # AutoAttack judges each member's outputs on a stochastic detector by eot_iter fresh score draws per sample
    judging = 6 * 2 * 3 if name == "autoattack" else 0
    assert costs[True] == (3 * costs[False][0] + judging, 3 * costs[False][1])


def test_empty_and_one_sided_empty_inputs() -> None:
    x, is_anomaly = toy_data(n=4)
    det = MLPScorer(16)
    assert torch.equal(run("pgd", det, x[:0], is_anomaly[:0], eps=0.1)[0], x[:0])
    normals_only = torch.zeros(4, dtype=torch.bool)
    assert torch.equal(run("pgd-out", det, x, normals_only, eps=0.1)[0], x)


class RandomStartTrap(LinearScorer):
    """w.x plus a spike at the clean inputs: every point of the ball but x itself scores lower for normals."""

    def __init__(self, w, x) -> None:
        super().__init__(w)
        self.register_buffer("anchors", x.flatten(1).clone())

    def score(self, x):
        spike = torch.exp(-(torch.cdist(x.flatten(1), self.anchors).amin(dim=1) ** 2) / 1e-6)
        return x.flatten(1) @ self.w + 10 * spike


@pytest.mark.parametrize(("name", "options"), [("pgd", {}), ("apgd", {}), ("apgd", {"restarts": 2})])
def test_attacks_never_return_a_point_less_harmful_than_the_clean_input(name, options) -> None:
    """With random starts the clean input still competes: per sample the objective is at least the clean one."""
    x, is_anomaly = toy_data(n=20)
    det = RandomStartTrap(torch.zeros(16), x)
    x_adv, _ = run(name, det, x, is_anomaly, eps=0.1, steps=3, **options)
    sign = objective_sign(is_anomaly)
    assert (sign * det.score(x_adv) >= sign * det.score(x) - 1e-6).all()
