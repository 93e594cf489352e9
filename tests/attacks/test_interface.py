"""The contract every attack shares: get(), validation, result shape, model state,
honest success masks and batched cost."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from aerobust.attacks import (
    APGD,
    ATTACKS,
    CPU_BLOCK_SIZE,
    CW,
    FAB,
    FGSM,
    PGD,
    Attack,
    AttackResult,
    DeepFool,
    Execution,
    Square,
    attack_mode,
    get,
)
from aerobust.attacks.runner import block_bounds
from aerobust.errors import UserError

# Cheap but real configurations, one per attack.
CHEAP = {
    "fgsm": {"eps": 0.1},
    "pgd": {"eps": 0.1, "steps": 5, "restarts": 2},
    "cw": {"binary_steps": 3, "steps": 30},
    "deepfool": {"steps": 10},
    "apgd": {"eps": 0.1, "steps": 5},
    "square": {"eps": 0.1, "queries": 20},
    "fab": {"eps": 0.1, "steps": 5, "n_target_classes": 2, "restarts": 2},
}


def test_registry_names_every_attack() -> None:
    assert {"fgsm": FGSM, "pgd": PGD, "cw": CW, "deepfool": DeepFool, "apgd": APGD,
            "square": Square, "fab": FAB} == ATTACKS
    for name, params in CHEAP.items():
        attack = get(name, **params)
        assert isinstance(attack, ATTACKS[name])
        assert attack.name == name


def test_get_is_case_insensitive_and_resolves_defaults() -> None:
    attack = get("PGD", eps=0.2)
    assert attack.params() == {
        "eps": 0.2, "steps": 40, "step_size": 2.5 * 0.2 / 40, "restarts": 1,
        "random_start": True, "seed": 0, "keep": "first", "eot": 1, "loss": "ce", "norm": "Linf",
    }


def test_unknown_attack_lists_the_known_ones() -> None:
    with pytest.raises(UserError, match="fgsm, pgd, cw, deepfool"):
        get("bim", eps=0.1)


def test_unknown_and_missing_parameters() -> None:
    with pytest.raises(UserError, match=r"unknown parameter.*epsilon"):
        get("fgsm", epsilon=0.1)
    with pytest.raises(UserError, match=r"missing parameter.*eps"):
        get("pgd")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("fgsm", {"eps": -0.1}, "eps must be in"),
        ("fgsm", {"eps": 8}, "did you mean 8/255"),
        ("fgsm", {"eps": float("nan")}, "eps must be a number"),
        ("fgsm", {"eps": "0.1"}, "eps must be a number"),
        ("pgd", {"eps": 1.5}, "eps must be in"),
        ("pgd", {"eps": 0.1, "steps": 0}, "steps must be in"),
        ("pgd", {"eps": 0.1, "steps": 2.5}, "steps must be an integer"),
        ("pgd", {"eps": 0.1, "step_size": -0.01}, "step_size must be in"),
        ("pgd", {"eps": 0.1, "restarts": 0}, "restarts must be in"),
        ("pgd", {"eps": 0.1, "random_start": 1}, "random_start must be true or false"),
        ("pgd", {"eps": 0.1, "seed": -1}, "seed must be in"),
        ("cw", {"confidence": -1.0}, "confidence must be in"),
        ("cw", {"c_init": 0.0}, "c_init must be in"),
        ("cw", {"binary_steps": 0}, "binary_steps must be in"),
        ("cw", {"steps": 0}, "steps must be in"),
        ("cw", {"lr": 0}, "lr must be in"),
        ("cw", {"steps": True}, "steps must be an integer"),
        ("deepfool", {"steps": 0}, "steps must be in"),
        ("deepfool", {"overshoot": -0.02}, "overshoot must be in"),
        ("deepfool", {"num_classes": 1}, "num_classes must be in"),
        ("deepfool", {"margin": -1e-4}, "margin must be in"),
    ],
)
def test_out_of_range_parameters_raise_one_line_user_errors(
    name: str, params: dict, message: str
) -> None:
    with pytest.raises(UserError, match=message) as info:
        get(name, **params)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{name}: ")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"block_size": 0}, "block_size must be in"),
        ({"block_size": 2.5}, "block_size must be an integer"),
        ({"block_size": True}, "block_size must be an integer"),
        ({"channels_last": 1}, "channels_last must be true, false or null"),
    ],
)
def test_bad_execution_settings_raise_one_line_user_errors(params: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        Execution(**params)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("execution: ")


@pytest.mark.parametrize("setting", ["block_size", "channels_last"])
def test_execution_settings_are_not_attack_parameters(setting: str) -> None:
    """``get`` says where a setting that once was an attack field went."""
    with pytest.raises(UserError, match=rf"pgd: {setting} is an execution setting, not an "
                       rf"attack parameter: pass execution=Execution\({setting}=") as info:
        get("pgd", eps=0.1, **{setting: 16})
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="block_size, channels_last are execution settings"):
        get("fgsm", eps=0.1, channels_last=True, block_size=16)
    assert setting not in get("pgd", eps=0.1).params()


def test_attacks_are_immutable_configs() -> None:
    attack = get("pgd", eps=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        attack.eps = 0.2  # type: ignore[misc]


def test_bad_inputs_raise_user_errors(digits: Any, mlp: Callable[..., nn.Module]) -> None:
    attack, model, x, y = FGSM(eps=0.1), mlp(), digits.x[:8], digits.y[:8]
    with pytest.raises(UserError, match=r"lie in \[0,1\].*got \[0, 255\]"):
        attack(model, x * 255, y)
    with pytest.raises(UserError, match=r"got \[-0\.5, 1\]"):
        attack(model, x - 0.5 * (x == 0).float(), y)
    with pytest.raises(UserError, match="y must be integer labels"):
        attack(model, x, y[:4])
    with pytest.raises(UserError, match="y must be integer labels"):
        attack(model, x, y.float())


@pytest.mark.parametrize("name", CHEAP)
def test_result_fields(name: str, digits: Any, conv: Callable[..., nn.Module]) -> None:
    x, y = digits.x[:16], digits.y[:16]
    result = get(name, **CHEAP[name])(conv(), x, y)
    assert isinstance(result, AttackResult)
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert not result.x_adv.requires_grad
    assert result.success.dtype == torch.bool and result.success.shape == (16,)
    delta = (result.x_adv - x).flatten(1)
    torch.testing.assert_close(result.l2, delta.norm(dim=1))
    torch.testing.assert_close(result.linf, delta.abs().amax(dim=1))
    assert result.forwards >= 1
    assert result.backwards >= (0 if name == "square" else 1)  # square uses no gradients


@pytest.mark.parametrize("name", CHEAP)
@pytest.mark.parametrize("trained_model", [False, True])
def test_reported_success_is_a_real_misclassification(
    name: str,
    trained_model: bool,
    digits: Any,
    trained: nn.Module,
    conv: Callable[..., nn.Module],
) -> None:
    """Run every x_adv through the model again: success iff misclassified."""
    model = trained if trained_model else conv(seed=3)
    x, y = digits.x[:64], digits.y[:64]
    result = get(name, **CHEAP[name])(model, x, y)
    with torch.no_grad():
        wrong = model(result.x_adv).argmax(dim=1) != y
    assert torch.equal(result.success, wrong)
    assert result.success.any()  # not vacuous


def mixed_state_model() -> nn.Module:
    """Train mode with one submodule in eval, batch norm (whose running statistics a
    train-mode forward would move), dropout, and mixed requires_grad flags."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(32, 10),
    )
    model.train()
    model[4].eval()
    model[1].weight.requires_grad_(False)
    return model


def snapshot(model: nn.Module) -> tuple[list[bool], list[bool], dict[str, torch.Tensor]]:
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def assert_unchanged(model: nn.Module, before: tuple) -> None:
    modes, flags, state = snapshot(model)
    assert modes == before[0]
    assert flags == before[1]
    for key, value in state.items():
        assert torch.equal(value, before[2][key]), key
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", CHEAP)
def test_model_state_restored_and_frozen_during_attack(name: str, digits: Any) -> None:
    model = mixed_state_model()
    before = snapshot(model)
    seen: list[tuple[bool, bool]] = []

    def check(module: nn.Module, _: object) -> None:
        seen.append((any(m.training for m in module.modules()),
                     any(p.requires_grad for p in module.parameters())))

    handle = model.register_forward_pre_hook(check)
    get(name, **CHEAP[name])(model, digits.x[:16], digits.y[:16])
    handle.remove()
    assert seen and set(seen) == {(False, False)}
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", CHEAP)
def test_model_state_restored_when_the_attack_raises(name: str, digits: Any) -> None:
    model = mixed_state_model()
    before = snapshot(model)
    x = digits.x[:16]
    with attack_mode(model), torch.no_grad():
        y = model(x).argmax(1)  # all correct: no attack is done after one forward
    calls = 0

    def explode(module: nn.Module, _: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("boom")

    handle = model.register_forward_pre_hook(explode)
    with pytest.raises(RuntimeError, match="boom"):
        get(name, **CHEAP[name])(model, x, y)
    handle.remove()
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", CHEAP)
def test_inputs_are_left_untouched(name: str, digits: Any, conv: Callable[..., nn.Module]) -> None:
    """Attacks work on aliases of x (no defensive clones): the caller's tensors must
    come back unchanged, without gradients or a grad flag."""
    x, y = digits.x[:16].clone(), digits.y[:16].clone()
    get(name, **CHEAP[name])(conv(), x, y)
    assert torch.equal(x, digits.x[:16]) and torch.equal(y, digits.y[:16])
    assert not x.requires_grad and x.grad is None


class CountingTrain(nn.Sequential):
    """Counts ``train()`` calls (``eval()`` is ``train(False)``)."""

    calls = 0

    def train(self, mode: bool = True) -> CountingTrain:
        CountingTrain.calls += 1
        return super().train(mode)


def test_attack_mode_leaves_an_eval_frozen_model_alone() -> None:
    """Flags are written only where they differ: an eval-mode model with frozen
    parameters is not touched; a training one is switched and restored."""
    model = CountingTrain(nn.Linear(4, 3), nn.Dropout(0.5)).eval().requires_grad_(False)
    CountingTrain.calls = 0
    with attack_mode(model):
        assert not model.training
    assert CountingTrain.calls == 0
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.train().requires_grad_(True)
    CountingTrain.calls = 0
    with attack_mode(model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
    assert CountingTrain.calls == 1
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_attack_mode_nests_and_restores() -> None:
    model = mixed_state_model()
    before = snapshot(model)
    with attack_mode(model), attack_mode(model):
        assert not any(m.training for m in model.modules())
    assert_unchanged(model, before)


def test_attacks_work_under_no_grad(digits: Any, conv: Callable[..., nn.Module]) -> None:
    """Evaluation loops often run under no_grad; attacks need gradients anyway."""
    with torch.no_grad():
        result = PGD(eps=0.1, steps=3)(conv(), digits.x[:8], digits.y[:8])
    assert result.backwards == 3 or result.success.all()


@pytest.mark.parametrize("name", CHEAP)
def test_cost_does_not_grow_with_batch_size(
    name: str, digits: Any, mlp: Callable[..., nn.Module]
) -> None:
    """Per-sample Python loops would make the pass counts scale with the batch."""
    attack: Attack = get(name, **CHEAP[name])
    model, one_block = mlp(seed=5), Execution(block_size=128)
    one = attack(model, digits.x[:1], digits.y[:1], execution=one_block)
    many = attack(model, digits.x[:128], digits.y[:128], execution=one_block)
    bound = {
        "fgsm": (2, 1),
        "pgd": (2 * (5 + 1), 2 * 5),
        "cw": (3 * 30, 3 * 30),
        "deepfool": (10 + 1, 10 * 9),
        "apgd": (5 + 1, 5),
        "square": (20 + 2, 0),
        "fab": (1 + 2 * 2 * 5 * 2, 2 * 2 * 5),
    }[name]
    for result in (one, many):
        assert result.forwards <= bound[0] and result.backwards <= bound[1]


@pytest.mark.parametrize("name", ["fgsm", "cw", "deepfool"])
def test_blocks_are_separate_calls(name: str, digits: Any, mlp: Callable[..., nn.Module]) -> None:
    """A batch split into blocks gives exactly what one call per block gives, in order,
    and the pass counts add up (PGD's random starts are drawn for the whole call)."""
    model, x, y, attack = mlp(seed=3), digits.x[:40], digits.y[:40], get(name, **CHEAP[name])
    blocked = attack(model, x, y, execution=Execution(block_size=16))  # blocks of 13, 13, 14
    whole = Execution(block_size=40)
    parts = [attack(model, x[a:b], y[a:b], execution=whole)
             for a, b in ((0, 13), (13, 26), (26, 40))]
    assert torch.equal(blocked.x_adv, torch.cat([p.x_adv for p in parts]))
    assert torch.equal(blocked.success, torch.cat([p.success for p in parts]))
    assert blocked.forwards == sum(p.forwards for p in parts)
    assert blocked.backwards == sum(p.backwards for p in parts)


@pytest.mark.parametrize("name", ["fgsm", "pgd", "deepfool", "cw", "fab"])
def test_results_do_not_depend_on_the_blocks(
    name: str, digits: Any, mlp: Callable[..., nn.Module]
) -> None:
    """Each sample's result is the same whatever block it is attacked in: PGD draws its
    random starts for the whole call; CW without early abort makes no per-call
    decision."""
    params = {**CHEAP[name], **({"abort_early": False} if name == "cw" else {})}
    model, x, y = mlp(seed=4), digits.x[:64], digits.y[:64]
    attack = get(name, **params)
    small = attack(model, x, y, execution=Execution(block_size=5))
    large = attack(model, x, y, execution=Execution(block_size=64))
    torch.testing.assert_close(small.x_adv, large.x_adv)
    assert torch.equal(small.success, large.success)


def test_default_blocks_by_device(
    digits: Any, mlp: Callable[..., nn.Module], recorder: type[nn.Module]
) -> None:
    model = recorder(mlp())
    result = FGSM(eps=0.1)(model, digits.x[:100], digits.y[:100])
    sizes = [len(batch) for batch in model.seen]
    assert CPU_BLOCK_SIZE == 64 and sizes == [50] * 4  # 2 equal blocks, 2 forwards each
    assert result.x_adv.shape == (100, 1, 8, 8) and result.forwards == 4
    assert Execution().resolve(100, "cpu") == Execution(block_size=64, channels_last=True)
    # On any other device one block takes the whole batch (checked without a GPU).
    assert Execution().resolve(100, "meta") == Execution(block_size=100, channels_last=False)
    assert Execution(block_size=7).resolve(100, "cpu").block_size == 7
    # Resolved: the most samples a block holds, so the same blocks and an honest record.
    assert Execution(block_size=1000).resolve(70, "cpu").block_size == 70
    assert Execution().resolve(0, "meta").block_size == 1
    assert Execution(block_size=7).resolve(100, "meta").resolve(100, "cpu") \
        == Execution(block_size=7, channels_last=False)  # resolving again keeps it


@given(n=st.integers(0, 500), size=st.integers(1, 600))
def test_block_bounds_cover_the_batch_in_near_equal_blocks(n: int, size: int) -> None:
    bounds = block_bounds(n, size)
    sizes = [b - a for a, b in bounds]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(bounds))
    assert max(sizes) <= size and max(sizes) - min(sizes) <= 1
    assert len(bounds) == max(1, -(-n // size))  # as few blocks as fit


class _LayoutSpy(nn.Module):
    """A conv net that records whether its conv weight was NHWC at each forward; with
    ``flip`` its logits favour class 0 in NCHW and class 1 in NHWC, so whatever the
    attack finds in one layout is wrong in the other."""

    def __init__(self, flip: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 2)
        self.flip = flip
        self.nhwc: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nhwc = self.conv.weight.stride(1) == 1  # NCHW: 9, one channel's kernel
        self.nhwc.append(nhwc)
        logits = self.head(self.conv(x).flatten(1))
        if self.flip:
            bias = torch.tensor([0.0, 1e3]) if nhwc else torch.tensor([1e3, 0.0])
            logits = logits + bias
        return logits


@pytest.mark.parametrize("name", CHEAP)
def test_channels_last_runs_nhwc_and_puts_the_weights_back(name: str, digits: Any) -> None:
    torch.manual_seed(0)
    model = _LayoutSpy()
    weight = model.conv.weight
    pointer, strides = weight.data_ptr(), weight.stride()
    attack, x, y = get(name, **CHEAP[name]), digits.x[:8], digits.y[:8] % 2
    result = attack(model, x, y, execution=Execution(channels_last=True))
    assert model.nhwc[0] and not model.nhwc[-1]  # attacked in NHWC, checked as it is
    assert model.conv.weight is weight
    assert weight.data_ptr() == pointer and weight.stride() == strides
    assert result.x_adv.is_contiguous()
    model.nhwc.clear()
    attack(model, x, y, execution=Execution(channels_last=False))
    assert not any(model.nhwc)
    model.nhwc.clear()
    attack(model, x, y)
    assert model.nhwc[0] and not model.nhwc[-1]  # the default on a CPU


def test_channels_last_default_is_per_device() -> None:
    assert Execution().resolve(2, "cpu").channels_last
    assert not Execution().resolve(2, "meta").channels_last
    assert not Execution(channels_last=False).resolve(2, "cpu").channels_last
    assert Execution(channels_last=True).resolve(2, "meta").channels_last


@pytest.mark.parametrize("name", ["pgd", "cw", "deepfool"])
def test_channels_last_success_is_what_the_model_as_it_is_says(name: str, digits: Any) -> None:
    """In NHWC every input is class 1, as it is every input is class 0: with label 0 the
    NHWC run fools everything, the check finds nothing fooled, and the samples are
    attacked again as the model is (where nothing can fool it)."""
    model = _LayoutSpy(flip=True)
    x, y = digits.x[:6], torch.zeros(6, dtype=torch.long)
    attack = get(name, **CHEAP[name])
    result = attack(model, x, y, execution=Execution(channels_last=True))
    plain = attack(model, x, y, execution=Execution(channels_last=False))
    assert not result.success.any()
    assert torch.equal(result.x_adv, plain.x_adv)  # exactly what the plain attack gives
    with torch.no_grad():
        assert (model(result.x_adv).argmax(1) == y).all()


def test_channels_last_restores_the_weights_when_the_attack_raises(digits: Any) -> None:
    model = _LayoutSpy()
    pointer = model.conv.weight.data_ptr()

    def boom(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        raise RuntimeError("boom")

    model.head.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        FGSM(eps=0.1)(model, digits.x[:4], digits.y[:4] % 2,
                      execution=Execution(channels_last=True))
    assert model.conv.weight.data_ptr() == pointer and model.conv.weight.stride(1) == 9


def test_channels_last_leaves_conv_subclasses_alone(digits: Any) -> None:
    """A subclass may ``view`` its weight (weight standardisation): never handed NHWC."""

    class Viewing(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = self.weight.view(self.out_channels, -1)  # fails on an NHWC weight
            return self._conv_forward(x, w.view_as(self.weight), self.bias)

    model = nn.Sequential(Viewing(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(128, 2))
    result = FGSM(eps=0.1)(model, digits.x[:4], digits.y[:4] % 2,
                           execution=Execution(channels_last=True))
    assert result.x_adv.shape == digits.x[:4].shape

