"""APGD: the threat model at every iterate, the kept iterate (first fooling, else best
loss), pass counts, reproducibility, and that it is the stronger attack the paper says:
at least PGD's success, and DLR sees through logits scaled to saturate the softmax."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aerobust.attacks import APGD, PGD, Execution, get
from aerobust.attacks.apgd import checkpoints
from aerobust.attacks.losses import margin
from aerobust.errors import UserError
from tests.attacks.replay import active_rows

BLOCK_32, BLOCK_64 = Execution(block_size=32), Execution(block_size=64)


class Scaled(nn.Module):
    """The model with its logits times ``factor``: same decisions, softmax saturated."""

    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.model(x)


class Noisy(nn.Module):
    """A randomised model: Gaussian noise on the input of every forward."""

    def __init__(self, model: nn.Module, sigma: float) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))


def test_checkpoints_follow_the_paper() -> None:
    """p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99; ceil(0.22 * 100) is 22 (in
    floats 0.22 * 100 = 22.000000000000004)."""
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9]  # ceil, duplicates dropped
    assert checkpoints(1) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"eps": 1.5}, "eps must be in"),
        ({"eps": 8}, "did you mean 8/255"),
        ({"eps": -0.1}, "eps must be in"),
        ({"eps": 0.1, "steps": 0}, "steps must be in"),
        ({"eps": 0.1, "steps": 2.5}, "steps must be an integer"),
        ({"eps": 0.1, "restarts": 0}, "restarts must be in"),
        ({"eps": 0.1, "loss": "hinge"}, "loss must be one of ce, dlr, margin"),
        ({"eps": 0.1, "targeted": 1}, "targeted must be true or false"),
        ({"eps": 0.1, "n_target_classes": 0}, "n_target_classes must be in"),
        ({"eps": 0.1, "first_target": -1}, "first_target must be in"),
        ({"eps": 0.1, "rho": 1.5}, "rho must be in"),
        ({"eps": 0.1, "momentum": -0.1}, "momentum must be in"),
        ({"eps": 0.1, "seed": -1}, "seed must be in"),
        ({"eps": 0.1, "random_start": "yes"}, "random_start must be true or false"),
        ({"eps": 0.1, "targeted": True, "loss": F.cross_entropy},
         "targeted needs a named loss"),
        ({"eps": 0.1, "eot": 0}, "eot must be in"),
    ],
)
def test_bad_parameters_raise_one_line_user_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        APGD(**params)
    assert "\n" not in str(info.value)


def test_registered_with_its_defaults() -> None:
    attack = get("APGD", eps=0.1)
    assert isinstance(attack, APGD)
    assert attack.params() == {
        "eps": 0.1, "steps": 100, "restarts": 1, "loss": "ce", "targeted": False,
        "n_target_classes": 9, "first_target": 0, "rho": 0.75, "momentum": 0.75, "seed": 0,
        "random_start": True, "eot": 1, "norm": "Linf"}


@pytest.mark.parametrize("eps", [0.01, 0.05, 0.3])
@pytest.mark.parametrize("random_start", [False, True])
def test_every_iterate_stays_in_the_ball_and_in_0_1(
    eps: float, random_start: bool, digits: Any, trained: nn.Module, recorder: type[nn.Module]
) -> None:
    """The first step is 2 * eps, so the projection binds (non-vacuous); 10 steps pass
    six checkpoints, so halvings and returns to the best point occur too."""
    x, y = digits.x[:32], digits.y[:32]  # many pixels at exactly 0 and 1
    model = recorder(trained)
    attack = APGD(eps=eps, steps=10, random_start=random_start)
    result = attack(model, x, y, execution=BLOCK_32)
    rows = active_rows(model.seen, y, trained)
    deltas = []
    for iterate, clean in [*zip(model.seen, (x[r] for r in rows), strict=True),
                           (result.x_adv, x)]:
        assert iterate.shape == clean.shape
        deltas.append((iterate - clean).abs().max())
        assert iterate.min() >= 0 and iterate.max() <= 1
    assert max(deltas) <= eps + 1e-6
    assert max(deltas) >= eps - 1e-6  # the ball's edge is reached
    assert result.linf.max() <= eps + 1e-6


def test_first_step_is_twice_eps_without_momentum(
    digits: Any, trained: nn.Module, recorder: type[nn.Module]
) -> None:
    x, y = digits.x[:32], digits.y[:32]
    model = recorder(trained)
    APGD(eps=0.02, steps=3, random_start=False)(model, x, y, execution=BLOCK_32)
    rows = active_rows(model.seen, y, trained)[1]
    x0 = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(trained(x0), y, reduction="sum"), x0)
    expected = torch.clamp(x + 0.04 * grad.sign(), (x - 0.02).clamp(min=0), (x + 0.02).clamp(max=1))
    torch.testing.assert_close(model.seen[1], expected[rows])


def test_keeps_first_fooling_iterate_else_the_best_loss_one(
    digits: Any, trained: nn.Module, recorder: type[nn.Module]
) -> None:
    """Replays the run: a fooled sample keeps the iterate that first fooled it (then
    leaves the batch); a sample never fooled keeps its highest-CE iterate (the first of
    equals), not the last one as PGD does."""
    x, y = digits.x[:64], digits.y[:64]
    model = recorder(trained)
    result = APGD(eps=0.08, steps=12)(model, x, y, execution=BLOCK_64)
    assert 0 < result.success.sum() < 64  # both cases occur
    expected = torch.empty_like(x)
    fooled = torch.zeros(64, dtype=torch.bool)
    best = torch.full((64,), -torch.inf)
    last = torch.empty_like(x)
    for batch, rows in zip(model.seen, active_rows(model.seen, y, trained), strict=True):
        with torch.no_grad():
            logits = trained(batch)
        loss = F.cross_entropy(logits, y[rows], reduction="none")
        wrong = logits.argmax(1) != y[rows]
        better = wrong | (loss > best[rows])
        expected[rows[better]] = batch[better]
        best[rows] = torch.maximum(loss, best[rows])
        fooled[rows] = wrong
        last[rows] = batch
    assert torch.equal(result.success, fooled)
    assert torch.equal(result.x_adv, expected)
    assert not torch.equal(result.x_adv[~fooled], last[~fooled])  # not simply the last
    assert len(model.seen[-1]) < 64  # fooled samples left the batch


@pytest.mark.parametrize("convolutional", [False, True])
def test_reported_success_is_a_real_misclassification(
    convolutional: bool, digits: Any, trained: nn.Module, conv: Callable[..., nn.Module]
) -> None:
    """Also on a conv model, which the attack runs in NHWC on a CPU (then rechecks)."""
    x, y = digits.x[:128], digits.y[:128]
    model = conv(seed=3) if convolutional else trained
    for attack in (APGD(eps=0.1, steps=10), APGD(eps=0.1, steps=5, targeted=True, loss="dlr",
                                                   n_target_classes=3)):
        result = attack(model, x, y)
        with torch.no_grad():
            wrong = model(result.x_adv).argmax(1) != y
        assert torch.equal(result.success, wrong)
        assert result.success.any() and (convolutional or not result.success.all())
        assert result.x_adv.dtype == x.dtype and not result.x_adv.requires_grad
        assert result.linf.max() <= 0.1 + 1e-6


def test_restarts_reattack_only_unfooled_samples(
    digits: Any, trained: nn.Module, recorder: type[nn.Module]
) -> None:
    x, y = digits.x[:64], digits.y[:64]
    once = APGD(eps=0.07, steps=5, restarts=1)(trained, x, y, execution=BLOCK_64)
    model = recorder(trained)
    thrice = APGD(eps=0.07, steps=5, restarts=3)(model, x, y, execution=BLOCK_64)
    sizes = [len(batch) for batch in model.seen]
    survivors = 64 - int(once.success.sum())
    assert 0 < survivors < 64
    assert sizes[0] == 64 and sizes[5] >= survivors  # restart 1: steps + 1 forwards
    assert sizes[6] == survivors  # restart 2 starts on the survivors only
    assert sizes == sorted(sizes, reverse=True)
    assert torch.equal(thrice.x_adv[once.success], once.x_adv[once.success])
    assert torch.equal(thrice.success & once.success, once.success)


@pytest.mark.parametrize("targeted", [False, True])
def test_reproducible_and_independent_of_the_blocks(
    targeted: bool, digits: Any, trained: nn.Module
) -> None:
    x, y = digits.x[:64], digits.y[:64]
    params = {"eps": 0.08, "steps": 8, "restarts": 2, "seed": 7, "targeted": targeted,
              "loss": "dlr" if targeted else "ce", "n_target_classes": 2}
    first = APGD(**params)(trained, x, y, execution=BLOCK_64)
    again = APGD(**params)(trained, x, y, execution=BLOCK_64)
    small = APGD(**params)(trained, x, y, execution=Execution(block_size=5))
    other = APGD(**{**params, "seed": 8})(trained, x, y, execution=BLOCK_64)
    assert torch.equal(first.x_adv, again.x_adv) and torch.equal(first.success, again.success)
    torch.testing.assert_close(small.x_adv, first.x_adv)
    assert torch.equal(small.success, first.success)
    assert not torch.equal(first.x_adv, other.x_adv)


def test_does_not_modify_its_input(digits: Any, trained: nn.Module) -> None:
    x = digits.x[:16].clone()
    APGD(eps=0.1, steps=4)(trained, x, digits.y[:16])
    assert torch.equal(x, digits.x[:16])


@pytest.mark.parametrize("eps", [0.1, 0.15])
def test_at_least_as_strong_as_pgd(eps: float, digits: Any, trained: nn.Module) -> None:
    """Same eps and steps, one restart, all 1797 digits: robust accuracy (measured)
    PGD 0.603 / APGD 0.597 at eps 0.1, 0.228 / 0.221 at 0.15."""
    pgd = PGD(eps=eps, steps=10)(trained, digits.x, digits.y)
    apgd = APGD(eps=eps, steps=10)(trained, digits.x, digits.y)
    assert apgd.success.sum() >= pgd.success.sum()
    assert apgd.forwards <= 29 * 11  # 29 blocks of <= 64 samples, steps + 1 forwards each


def test_dlr_sees_through_saturated_softmax(digits: Any, trained: nn.Module) -> None:
    """Logits times 1e4: CE's gradient vanishes in float32 on confidently correct
    points, so PGD-CE (and APGD-CE) hardly break any; APGD with DLR (scale invariant)
    or the margin (linear in the logits) break nearly everything PGD breaks on the
    unscaled model. Measured on 256 digits, 253 correct: unscaled PGD breaks 97 of
    them, PGD-CE / APGD-CE on the scaled model 4 / 4, APGD-DLR / margin 94 / 94 (92 of
    PGD's 97); APGD-T (DLR) 101."""
    x, y = digits.x[:256], digits.y[:256]
    scaled = Scaled(trained, 1e4)
    with torch.no_grad():
        correct = trained(x).argmax(1) == y
    plain = PGD(eps=0.1, steps=10)(trained, x, y).success & correct
    assert plain.sum() >= 80
    for blind in (PGD(eps=0.1, steps=10), APGD(eps=0.1, steps=10)):
        broken = blind(scaled, x, y).success & correct
        assert broken.sum() <= 0.1 * plain.sum()
        assert (correct & ~broken).sum() >= 0.95 * correct.sum()
    dlr = None
    for loss in ("dlr", "margin"):
        broken = APGD(eps=0.1, steps=10, loss=loss)(scaled, x, y).success & correct
        assert (broken & plain).sum() >= 0.9 * plain.sum()
        dlr = broken if dlr is None else dlr
    aimed = APGD(eps=0.1, steps=10, loss="dlr", targeted=True)(scaled, x, y).success & correct
    assert aimed.sum() >= dlr.sum()


def test_targeted_reaches_at_least_dlr_success(digits: Any, trained: nn.Module) -> None:
    """Measured on 256 digits at eps 0.1: robust accuracy APGD-DLR 0.621, APGD-T 0.594."""
    x, y = digits.x[:256], digits.y[:256]
    dlr = APGD(eps=0.1, steps=10, loss="dlr")(trained, x, y)
    aimed = APGD(eps=0.1, steps=10, loss="dlr", targeted=True)(trained, x, y)
    assert aimed.success.sum() >= dlr.success.sum()


def test_targeted_aims_at_the_runner_up(digits: Any, trained: nn.Module) -> None:
    """With one target class it is the class of the largest clean logit other than the
    label: what the samples it fools are classified as, nearly always."""
    x, y = digits.x[:256], digits.y[:256]
    with torch.no_grad():
        runner_up = trained(x).scatter(1, y[:, None], -torch.inf).argmax(1)
    result = APGD(eps=0.1, steps=10, loss="margin", targeted=True, n_target_classes=1)(
        trained, x, y)
    with torch.no_grad():
        pred = trained(result.x_adv).argmax(1)
    hit = result.success
    assert hit.sum() >= 50
    assert (pred[hit] == runner_up[hit]).float().mean() >= 0.9


@pytest.mark.parametrize(("steps", "restarts"), [(1, 1), (7, 1), (5, 3)])
def test_pass_counts_when_nothing_is_fooled(steps: int, restarts: int, affine: Any) -> None:
    """Documented cost: (steps + 1) forwards and steps backwards per run; APGD-T adds a
    clean forward and runs once per target: 4 on this 5-class model (capped at
    classes - 1 from the default 9). The boundary is >= 0.03 away in L2."""
    for n in (1, len(affine.y)):
        x, y = affine.x[:n], affine.y[:n]
        result = APGD(eps=1e-4, steps=steps, restarts=restarts)(affine.model, x, y)
        assert not result.success.any()
        assert (result.forwards, result.backwards) == (restarts * (steps + 1),
                                                        restarts * steps)
        result = APGD(eps=1e-4, steps=steps, restarts=restarts, targeted=True, loss="dlr")(
            affine.model, x, y)
        assert not result.success.any()
        assert (result.forwards, result.backwards) == (1 + 4 * restarts * (steps + 1),
                                                        4 * restarts * steps)


def test_stops_once_every_sample_is_fooled(affine: Any) -> None:
    wrong = (affine.y + 1) % 5  # already misclassified at every point of the ball
    result = APGD(eps=0.01, restarts=3)(affine.model, affine.x, wrong)
    assert result.success.all() and (result.forwards, result.backwards) == (1, 0)
    result = APGD(eps=0.01, targeted=True)(affine.model, affine.x, wrong)
    assert result.success.all() and (result.forwards, result.backwards) == (2, 0)


@pytest.mark.parametrize("targeted", [False, True])
def test_eps_zero_is_a_single_forward(targeted: bool, digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:32], digits.y[:32]
    result = APGD(eps=0.0, targeted=targeted)(trained, x, y)
    assert torch.equal(result.x_adv, x)
    assert (result.forwards, result.backwards) == (1, 0)
    assert torch.equal(result.success, trained(x).argmax(1) != y)


def test_eot_counts_every_draw(affine: Any, digits: Any, trained: nn.Module) -> None:
    """With eot=k every forward is k draws (one backward through them all), plus the
    k-draw final check of the runner; noise this small moves no affine point over
    its boundary. On digits with heavy noise it runs and stays in the ball."""
    noisy = Noisy(affine.model, 1e-3)
    result = APGD(eps=1e-4, steps=3, eot=4)(noisy, affine.x, affine.y)
    assert not result.success.any()
    assert (result.forwards, result.backwards) == (4 * (3 + 1) + 4, 3)
    torch.manual_seed(0)
    x, y = digits.x[:64], digits.y[:64]
    result = APGD(eps=0.1, steps=5, eot=3)(Noisy(trained, 0.1), x, y)
    assert result.forwards % 3 == 0 and result.success.any()
    assert result.linf.max() <= 0.1 + 1e-6 and 0 <= result.x_adv.min() <= result.x_adv.max() <= 1


def class_three(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Raise the logit of class 3, whatever the label."""
    return logits[:, 3]


def confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Minus the margin: maximising it makes the model surer of the label."""
    return -margin(logits, y)


def constant(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """No gradient at all: an attack that uses it cannot move."""
    return 0 * logits.sum(dim=1)


def test_a_callable_loss_is_the_one_maximised(digits: Any, trained: nn.Module) -> None:
    """Measured on the 115 non-3s of the first 128 digits at eps 0.15: CE fools 89
    (8% of them into a 3), raising logit 3 fools 33 (64% into a 3; the first fooling
    iterate can cross another class first), maximising confidence fools 5."""
    x, y = digits.x[:128], digits.y[:128]
    keep = y != 3
    x, y = x[keep], y[keep]
    ce = APGD(eps=0.15, steps=10)(trained, x, y)
    towards = APGD(eps=0.15, steps=10, loss=class_three)(trained, x, y)
    with torch.no_grad():
        into_three = [(trained(r.x_adv).argmax(1)[r.success] == 3).float().mean()
                      for r in (ce, towards)]
    assert towards.success.sum() >= 20
    assert into_three[0] <= 0.2 and into_three[1] >= 0.5
    assert ce.success.sum() >= 70
    sure = APGD(eps=0.15, steps=10, loss=confidence)(trained, x, y)
    assert sure.success.sum() <= 0.1 * ce.success.sum()
    still = APGD(eps=0.15, steps=10, loss=constant, random_start=False)(trained, x, y)
    assert torch.equal(still.x_adv, x)
    assert APGD(eps=0.1, loss=class_three).params()["loss"].endswith("test_apgd.class_three")


def test_targets_split_in_two_attacks_do_what_one_does(digits: Any, trained: nn.Module
                                                       ) -> None:
    """The top target, then targets 2-4 on what it left: the same as all 4 in one run
    (each target runs on the samples every earlier one left unfooled)."""
    x, y = digits.x[:64], digits.y[:64]
    params = {"eps": 0.06, "steps": 6, "seed": 3, "targeted": True, "loss": "dlr"}
    whole = APGD(**params, n_target_classes=4)(trained, x, y)
    top = APGD(**params, n_target_classes=1)(trained, x, y)
    rest = (~top.success).nonzero().squeeze(1)
    later = APGD(**params, n_target_classes=3, first_target=1)(trained, x[rest], y[rest])
    assert top.success.sum() < whole.success.sum()  # the later targets matter here
    joined = top.success.clone()
    joined[rest] = later.success
    assert torch.equal(joined, whole.success)
    assert torch.equal(later.x_adv[later.success], whole.x_adv[rest][later.success])
    beyond = APGD(**params, n_target_classes=3, first_target=9)(trained, x, y)
    assert torch.equal(beyond.x_adv, x) and beyond.forwards == 1
