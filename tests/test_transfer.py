"""Transfer attacks: onto itself a transfer is the white-box attack; substitutes are
separate models; the relabelled substitute data."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from aerobust import attacks
from aerobust.attacks import Execution, craft, relabelled, score, transfer
from aerobust.errors import UserError
from tests.conftest import fit_by_gradient_descent, make_dataset

pytestmark = pytest.mark.usefixtures("one_thread")




DATA = make_dataset(n_train=60, n_test=40, size=8)


@functools.cache
def _mlp(seed: int) -> nn.Module:
    """A small MLP trained on the synthetic bands by plain gradient descent (no optimizer
    import: fast), to full clean accuracy with a margin an eps of about 0.28 just crosses."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    return fit_by_gradient_descent(model, DATA.x_train, DATA.y_train, steps=60).eval()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    return DATA.x_test, DATA.y_test


@pytest.mark.parametrize("attack", [attacks.get("fgsm", eps=0.28),
                                    attacks.get("pgd", eps=0.28, steps=5),
                                    attacks.get("pgd", eps=0.28, steps=5, keep="last")])
def test_transfer_onto_itself_is_the_white_box_attack(attack: attacks.Attack) -> None:
    model = _mlp(0)
    x, y = _data()
    white = attacks.evaluate(model, x, y, attack, batch_size=16, keep_adversarials=True)
    crafted = craft(model, x, y, attack, batch_size=16)
    result = score(model, crafted, x, y, batch_size=16)
    assert torch.equal(crafted.adversarials, white.adversarials)
    assert result.accuracy == white.robust_accuracy == result.substitute_accuracy
    assert result.clean_accuracy == white.clean_accuracy
    assert 0 < white.robust_accuracy < white.clean_accuracy  # the attack does something
    assert result.n == 40 and result.target_forwards == 3


def test_transfer_scores_the_target_on_the_substitute_adversarials() -> None:
    sub, target = _mlp(0), _mlp(1)
    x, y = _data()
    attack = attacks.get("pgd", eps=0.28, steps=5, keep="last")
    result = transfer(sub, target, x, y, attack, batch_size=16)
    x_adv = craft(sub, x, y, attack, batch_size=16).adversarials
    with torch.no_grad():
        correct = target(x).argmax(1) == y
        robust = correct & (target(x_adv).argmax(1) == y)
    assert result.accuracy == pytest.approx(robust.double().mean().item())
    assert 0 < result.accuracy < 1 and result.substitute_accuracy < result.accuracy
    assert result.clean_accuracy == pytest.approx(correct.double().mean().item())
    white_sub = attacks.evaluate(sub, x, y, attack, batch_size=16)
    assert result.substitute_accuracy == white_sub.robust_accuracy
    assert result.backwards == white_sub.backwards  # the target is never differentiated


def test_craft_and_transfer_run_under_the_execution_given() -> None:
    x, y = _data()
    attack, policy = attacks.get("fgsm", eps=0.28), Execution(block_size=5, channels_last=False)
    crafted = craft(_mlp(0), x, y, attack, batch_size=16, execution=policy)
    result = transfer(_mlp(0), _mlp(1), x, y, attack, batch_size=16, execution=policy)
    expected = {"block_size": 5, "channels_last": False, "device": "cpu"}
    assert crafted.execution == result.execution == result.to_dict()["execution"] == expected
    # batches of 16, 16 and 8 in blocks of at most 5: 4 + 4 + 2 blocks, 2 forwards each
    assert crafted.forwards == result.forwards == 2 * (4 + 4 + 2)


def test_score_needs_kept_adversarials() -> None:
    x, y = _data()
    ev = attacks.evaluate(_mlp(0), x, y, attacks.get("fgsm", eps=0.1))
    with pytest.raises(UserError, match="kept no adversarials"):
        score(_mlp(1), ev, x, y)


def test_relabelled_dataset_has_new_labels_and_checksum() -> None:
    ds = make_dataset(n_train=12, n_test=6)
    labels = (ds.y_train + 1) % 3
    a = relabelled(ds, labels, "classifier-lenet5-x-123")
    b = relabelled(ds, labels, "classifier-lenet5-x-456")
    assert torch.equal(a.y_train, labels) and a.x_train is ds.x_train
    assert torch.equal(a.y_test, ds.y_test)  # test labels stay the truth
    assert len({ds.checksum, a.checksum, b.checksum}) == 3
    assert a.checksum == relabelled(ds, labels, "classifier-lenet5-x-123").checksum
    with pytest.raises(UserError, match="labels for 12"):
        relabelled(ds, labels[:5], "x")
