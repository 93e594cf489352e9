"""The L2 and L1 threat models: the projections against independent solvers (scipy), every
attack's outputs within eps in its norm and in [0,1], APGD at least as strong as PGD in
each norm, FAB's minimum norms against an affine model's exact distances, validation and
reproducibility."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize
from torch import nn

from aerobust.attacks import APGD, FAB, PGD, Square, get
from aerobust.attacks.fab import plane_step
from aerobust.attacks.norms import l1_box, l2_ball, size
from aerobust.errors import UserError


def _cases(seed: int, n: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres in [0,1] (some on its faces) and points to project, float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=g, dtype=torch.float64)
    x[:, 0], x[:, 1] = 0.0, 1.0  # faces of the box
    z = x + 0.6 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x, z


def test_l2_ball_scales_radially_and_leaves_inner_points() -> None:
    """Inside [0,1] the ball's projection is the radial one; a point already inside the
    ball is unchanged; with the box binding the result is still in both."""
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.01 * torch.randn(8, 1, 6, 6, generator=g, dtype=torch.float64)
    direction = torch.randn(8, 1, 6, 6, generator=g, dtype=torch.float64)
    far = x + direction / size(direction, "L2").view(-1, 1, 1, 1) * 0.3
    out = l2_ball(x, far, 0.2)
    expected = x + 0.2 * direction / size(direction, "L2").view(-1, 1, 1, 1)
    assert torch.allclose(out, expected, atol=1e-12)
    near = x + direction / size(direction, "L2").view(-1, 1, 1, 1) * 0.1
    assert torch.equal(l2_ball(x, near, 0.2), near)
    xb, zb = _cases(1, 16, 10)
    projected = l2_ball(xb, zb, 0.5)
    assert (size(projected - xb, "L2") <= 0.5 + 1e-12).all()
    assert projected.min() >= 0 and projected.max() <= 1


def _l1_reference(x: np.ndarray, z: np.ndarray, eps: float) -> np.ndarray:
    """argmin ||d - (z - x)||^2 over ||d||_1 <= eps, 0 <= x + d <= 1, by SLSQP on
    d = p - q with p, q >= 0 (an independent solver, not the sorted thresholds)."""
    dim, target = len(x), z - x

    def objective(v: np.ndarray) -> float:
        return float(((v[:dim] - v[dim:] - target) ** 2).sum())

    bounds = [(0.0, 1.0 - xi) for xi in x] + [(0.0, xi) for xi in x]
    constraint = {"type": "ineq", "fun": lambda v: eps - v.sum()}
    res = minimize(objective, np.zeros(2 * dim), bounds=bounds, constraints=[constraint],
                   method="SLSQP", options={"ftol": 1e-14, "maxiter": 1000})
    return x + res.x[:dim] - res.x[dim:]


@pytest.mark.parametrize("eps", [0.05, 0.4, 1.5, 10.0])
def test_l1_box_is_the_exact_projection(eps: float) -> None:
    """Against a QP solver on small vectors: the same point, in the ball and the box
    (eps 10 is larger than any point's distance: only the box binds)."""
    x, z = _cases(2, 12, 6)
    ours = l1_box(x, z, eps)
    for i in range(len(x)):
        reference = _l1_reference(x[i].numpy(), z[i].numpy(), eps)
        assert np.allclose(ours[i].numpy(), reference, atol=1e-6), (i, ours[i], reference)
    assert (size(ours - x, "L1") <= eps + 1e-12).all()
    assert ours.min() >= 0 and ours.max() <= 1


def _plane_reference(norm: str, x: np.ndarray, w: np.ndarray, need: float) -> float:
    """The smallest ||d|| in ``norm`` with <w, d> = need and 0 <= x + d <= 1, by an
    LP (Linf, L1) or SLSQP (L2)."""
    dim = len(x)
    if norm == "L1":  # d = p - q, min sum(p + q)
        res = linprog(np.ones(2 * dim), A_eq=np.concatenate([w, -w])[None], b_eq=[need],
                      bounds=[(0, 1 - xi) for xi in x] + [(0, xi) for xi in x])
        return float(res.fun)
    if norm == "Linf":  # variables d and t: min t, |d_i| <= t
        eye = np.eye(dim)
        a_ub = np.block([[eye, -np.ones((dim, 1))], [-eye, -np.ones((dim, 1))]])
        res = linprog(np.r_[np.zeros(dim), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * dim),
                      A_eq=np.r_[w, 0.0][None], b_eq=[need],
                      bounds=[(-xi, 1 - xi) for xi in x] + [(0, None)])
        return float(res.fun)
    res = minimize(lambda d: float((d ** 2).sum()), np.zeros(dim), method="SLSQP",
                   bounds=[(-xi, 1 - xi) for xi in x],
                   constraints=[{"type": "eq", "fun": lambda d: d @ w - need}],
                   options={"ftol": 1e-14, "maxiter": 1000})
    return float(np.sqrt(res.fun))


@pytest.mark.parametrize("norm", ["Linf", "L2", "L1"])
def test_plane_step_is_the_smallest_step_onto_the_hyperplane(norm: str) -> None:
    """FAB's projection onto a hyperplane inside [0,1], against an LP/QP solver: it lands
    on the plane, in the box, with the solver's minimal norm."""
    x, _ = _cases(3, 10, 7)
    g = torch.Generator().manual_seed(4)
    w = torch.randn(10, 7, generator=g, dtype=torch.float64)
    reach = torch.where(w > 0, 1 - x, x) * w.abs()  # the most <w, d> the box allows
    need = reach.sum(dim=1) * (0.05 + 0.8 * torch.rand(10, generator=g, dtype=torch.float64))
    need = need * torch.where(torch.arange(10) % 2 == 0, 1.0, -1.0)  # both directions
    need[need < 0] = -(torch.where(w > 0, x, 1 - x) * w.abs()).sum(dim=1)[need < 0] * 0.5
    d = plane_step(norm, x, w, need)
    assert torch.allclose((w * d).sum(dim=1), need, atol=1e-9)
    assert (x + d).min() >= -1e-12 and (x + d).max() <= 1 + 1e-12
    for i in range(10):
        reference = _plane_reference(norm, x[i].numpy(), w[i].numpy(), float(need[i]))
        assert float(size(d[i : i + 1], norm)) == pytest.approx(reference, rel=1e-5, abs=1e-9)


def test_plane_step_goes_to_the_box_corner_when_the_plane_is_out_of_reach() -> None:
    x = torch.full((1, 4), 0.5, dtype=torch.float64)
    w = torch.ones(1, 4, dtype=torch.float64)
    for norm in ("Linf", "L2", "L1"):
        assert torch.allclose(plane_step(norm, x, w, torch.tensor([5.0], dtype=torch.float64)),
                              torch.full((1, 4), 0.5, dtype=torch.float64))


# Cheap configurations of every attack in every norm other than Linf (and FAB's Linf).
CONFIGS = [
    ("pgd", "L2", 0.75, {}), ("pgd", "L1", 2.0, {}),
    ("apgd", "L2", 0.75, {"steps": 20}), ("apgd", "L2", 0.75, {"steps": 20, "loss": "dlr"}),
    ("apgd", "L2", 0.75, {"steps": 10, "loss": "dlr", "targeted": True,
                          "n_target_classes": 3}),
    ("apgd", "L1", 2.0, {"steps": 20}), ("apgd", "L1", 2.0, {"steps": 10, "loss": "dlr",
                                                             "targeted": True,
                                                             "n_target_classes": 3}),
    ("square", "L2", 0.75, {"queries": 100}),
    ("fab", "Linf", 0.1, {"steps": 10, "n_target_classes": 2}),
    ("fab", "L2", 0.75, {"steps": 10, "n_target_classes": 2, "restarts": 2}),
    ("fab", "L1", 2.0, {"steps": 10, "n_target_classes": 2, "targeted": False}),
]


@pytest.mark.parametrize(("name", "norm", "eps", "params"), CONFIGS)
def test_every_output_is_within_eps_in_its_norm_and_in_0_1(
        name: str, norm: str, eps: float, params: dict[str, Any], digits: Any,
        trained: nn.Module) -> None:
    """And success is a real misclassification; some points are broken, some not."""
    x, y = digits.x[:64], digits.y[:64]
    result = get(name, eps=eps, norm=norm, **params)(trained, x, y)
    assert (size(result.x_adv - x, norm) <= eps * (1 + 1e-5)).all()
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(trained(result.x_adv).argmax(1) != y, result.success)
    assert 0 < int(result.success.sum()) < len(y)


@pytest.mark.parametrize(("name", "norm", "eps", "params"), CONFIGS)
def test_reproducible_for_a_seed(name: str, norm: str, eps: float, params: dict[str, Any],
                                 digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:32], digits.y[:32]
    first = get(name, eps=eps, norm=norm, **params)(trained, x, y)
    again = get(name, eps=eps, norm=norm, **params)(trained, x, y)
    assert torch.equal(first.x_adv, again.x_adv) and torch.equal(first.success, again.success)


@pytest.mark.parametrize("name", ["pgd", "apgd"])
def test_another_seed_starts_elsewhere(name: str, digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:16], digits.y[:16]
    for norm in ("L2", "L1"):
        one = get(name, eps=0.3, norm=norm, steps=1, seed=0)(trained, x, y)
        two = get(name, eps=0.3, norm=norm, steps=1, seed=1)(trained, x, y)
        assert not torch.equal(one.x_adv, two.x_adv)


@pytest.mark.parametrize(("norm", "eps"), [("L2", 0.5), ("L2", 0.75), ("L1", 2.0)])
def test_apgd_is_at_least_as_strong_as_pgd(norm: str, eps: float, digits: Any,
                                           trained: nn.Module) -> None:
    """Robust accuracy of APGD-CE (40 steps) at most that of PGD-40, on 300 points of a
    trained model (measured: L2 0.5: 62.0% vs 63.7%, 0.75: 25.7% vs 29.0%; L1 2: 30.0%
    vs 44.7%). Not at L1 1.0: 75.3% vs 74.3% (PGD-L1's box-aware sparse steps win by 3
    points of 300 there; AutoAttack's L1 schedule at 3, 2, 1 times eps is not built)."""
    x, y = digits.x[:300], digits.y[:300]
    pgd = PGD(eps=eps, norm=norm)(trained, x, y)
    apgd = APGD(eps=eps, norm=norm, steps=40)(trained, x, y)
    assert int(apgd.success.sum()) >= int(pgd.success.sum())


def test_apgd_l2_first_step_is_twice_eps_along_the_normalised_gradient(
        affine: Any, recorder: type[nn.Module]) -> None:
    """The first step has L2 length 2 * eps along the normalised gradient, so from x
    (no random start, the box far away) the ball pulls it back onto the sphere."""
    model = recorder(affine.model)
    APGD(eps=0.02, norm="L2", steps=2, random_start=False, loss="margin")(
        model, affine.x, affine.y)
    first, second = model.seen[:2]
    assert torch.equal(first, affine.x) and len(second) == len(affine.x)  # none fooled
    assert torch.allclose(size(second - affine.x, "L2"),
                          torch.full((len(affine.x),), 0.02, dtype=torch.float64))
    # The margin is linear: the step is along its gradient, which the clean runner-up sets.
    logits = affine.model(affine.x)
    other = logits.scatter(1, affine.y[:, None], -torch.inf).argmax(1)
    grad = affine.model.weight[other] - affine.model.weight[affine.y]
    cosine = torch.nn.functional.cosine_similarity(second - affine.x, grad, dim=1)
    assert torch.allclose(cosine, torch.ones_like(cosine))


def _between(distance: torch.Tensor) -> float:
    """A radius halfway between the 8th and 9th smallest distances: no point sits on it."""
    ranked = distance.sort().values
    return float(ranked[7] + ranked[8]) / 2


def test_fab_finds_an_affine_models_exact_distance(affine: Any) -> None:
    """On an affine model the linearisation is exact: FAB (untargeted, and FAB-T over
    every other class) breaks every point whose L2 distance to the boundary is under
    eps / 1.06 and, honestly, none farther than eps."""
    eps = _between(affine.distance)
    near, far = affine.distance < eps / 1.06, affine.distance > eps
    for targeted in (False, True):
        result = FAB(eps=eps, norm="L2", targeted=targeted, n_target_classes=4,
                     steps=30)(affine.model, affine.x, affine.y)
        assert result.success[near].all() and not result.success[far].any()
        assert (result.l2[result.success] >= affine.distance[result.success] - 1e-9).all()


def test_fab_breaks_what_a_fixed_eps_attack_breaks_on_an_affine_model(affine: Any) -> None:
    """FAB's minimal norm is never above the radius at which APGD-L2 succeeds."""
    eps = _between(affine.distance)
    apgd = APGD(eps=eps, norm="L2", steps=50)(affine.model, affine.x, affine.y)
    fab = FAB(eps=eps, norm="L2", targeted=False, steps=30)(affine.model, affine.x, affine.y)
    assert apgd.success.any()
    assert (fab.success | ~apgd.success).all()


def test_fab_success_grows_with_eps(digits: Any, trained: nn.Module) -> None:
    """One run per target from x: the trajectory does not depend on eps, only where a
    point leaves it, so whatever FAB breaks at an eps it breaks at a larger one."""
    x, y = digits.x[:64], digits.y[:64]
    small = FAB(eps=0.5, norm="L2", steps=20, n_target_classes=2)(trained, x, y)
    large = FAB(eps=0.75, norm="L2", steps=20, n_target_classes=2)(trained, x, y)
    assert (large.success | ~small.success).all()
    assert int(large.success.sum()) > int(small.success.sum())


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("apgd", {"eps": 0.1, "norm": "L3"}, "norm must be one of Linf, L2, L1"),
        ("apgd", {"eps": 1.5}, "eps must be in [0, 1]"),
        ("apgd", {"eps": -1.0, "norm": "L2"}, "eps must be in [0, inf)"),
        ("pgd", {"eps": -0.5, "norm": "L1"}, "eps must be in [0, inf)"),
        ("square", {"eps": 1.0, "norm": "L1"}, "norm must be Linf or L2"),
        ("fab", {"eps": 0.1, "norm": "Lmax"}, "norm must be one of"),
        ("fab", {"eps": 0.1, "eta": 0.5}, "eta must be in"),
    ],
)
def test_bad_norms_and_radii_raise_one_line_user_errors(name: str, params: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)) as err:
        get(name, **params)
    assert "\n" not in str(err.value)


def test_norms_are_spelled_canonically_and_radii_per_norm() -> None:
    """``l2`` reads as L2; L2 and L1 radii may exceed 1; PGD's default step is 2.5 eps
    / steps in every norm."""
    assert get("apgd", eps=2.0, norm="l2").norm == "L2"
    assert get("pgd", eps=10.0, norm="L1").step_size == pytest.approx(2.5 * 10.0 / 40)
    assert get("square", eps=3.0, norm="L2").params()["norm"] == "L2"
    assert get("fab", eps=0.1).params()["targeted"] is True
    assert isinstance(get("square", eps=0.1), Square)
