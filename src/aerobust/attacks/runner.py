"""How an attack runs on a batch, apart from what it computes.

An attack (``base.Attack``) holds its algorithm; ``Execution`` holds the policy it runs
under (blocks, NHWC convolutions), and ``run`` applies that policy around the
algorithm. Every attack call, ``evaluate`` and the audit go through ``run``, so the
policy lives in one place and can be recorded, resolved, beside what it produced.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from aerobust.attacks.checks import check_number
from aerobust.attacks.model import CountedModel, attack_mode
from aerobust.attacks.result import AttackResult
from aerobust.errors import UserError

# Samples per block on the CPU (see ``Execution``): chosen from the block sweep that
# ``benchmarks/attacks.py`` measures on every run.
CPU_BLOCK_SIZE = 64


class Algorithm(Protocol):
    """What ``run`` needs of an attack: its name, EOT draws and two hooks (``base.Attack``
    is the one implementation; the interface calls ``run``, so ``run`` names only this)."""

    name: str
    eot: int

    def _draws(self, x: Tensor) -> Tensor | None: ...

    def _attack(self, model: CountedModel, x: Tensor, y: Tensor,
                draws: Tensor | None) -> tuple[Tensor, Tensor | None]: ...


@dataclass(frozen=True)
class Execution:
    """How attacks run: it changes speed, never what is attacked (``Attack.eot`` does).

    ``block_size`` splits a batch into blocks of at most that many samples, as equal as
    they can be (``block_bounds``), attacked one after the other, exactly as if each
    block were its own call. On a CPU the tensors of a large batch are big enough that
    the allocator hands them back to the system after every pass and the next pass maps
    and zeroes them again (thousands of page faults per call for a batch of 256 MNIST
    images); a block's are small enough to be reused, which measured faster than one
    large batch (``benchmarks/attacks.py`` sweeps block sizes and counts the faults).
    ``None``: ``CPU_BLOCK_SIZE`` samples on a CPU, the whole batch on any other device
    (a GPU wants large batches). Per-sample results do not depend on the blocks
    (random draws are made for the whole call first, see ``Attack._draws``), except
    where an attack decides per call: CW's early abort watches the block's total loss,
    and Square seeds a generator per block.

    ``channels_last`` runs the model's convolutions in NHWC during the attack
    (``channels_last_convs``): on a CPU a forward+backward pass of every model of this
    project measured faster in NHWC (1.05-1.5x; the one-channel MNIST layers most), so
    ``None`` means on for a CPU and off for any other device (not measured there);
    ``True``/``False`` force it. In NHWC the model computes a function that may differ
    from its own in the last bits, so ``run`` re-checks success in the model's own
    layout and re-attacks there what the NHWC run wrongly believed fooled.

    ``resolve`` decides the defaults for a batch and device; ``record`` gives what ran,
    as plain values, for results files (never ``None``).

    Args:
        block_size: the most samples attacked at once; None: ``CPU_BLOCK_SIZE`` on a CPU,
            the whole batch elsewhere.
        channels_last: run convolutions in NHWC during the attack; None: on a CPU only.

    Returns:
        Pass it as ``execution=`` to an attack call, ``evaluate``, ``craft``,
        ``transfer`` or the audit; results record what ran.

    Example:
        >>> fgsm = aerobust.attacks.FGSM(eps=8 / 255)
        >>> run = aerobust.evaluate(model, x, y, fgsm,
        ...                         execution=aerobust.attacks.Execution(block_size=4))
        >>> run.execution["block_size"]
        4
    """

    block_size: int | None = None
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        if self.block_size is not None:
            check_number("execution", "block_size", self.block_size, 1, integer=True)
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise UserError(f"execution: channels_last must be true, false or null (the "
                            f"default: NHWC on a CPU only), got {self.channels_last!r}")

    def resolve(self, n: int, device: torch.device | str) -> Execution:
        """This policy for batches of at most ``n`` samples on ``device``, every default
        decided and ``block_size`` the most samples a block then holds (never more than
        ``n``: the same blocks, and a record that says what ran)."""
        cpu = torch.device(device).type == "cpu"
        size = self.block_size if self.block_size is not None else CPU_BLOCK_SIZE if cpu else n
        nhwc = self.channels_last if self.channels_last is not None else cpu
        return Execution(block_size=max(1, min(size, n)), channels_last=nhwc)

    def record(self, n: int, device: torch.device | str) -> dict[str, Any]:
        """What runs for batches of at most ``n`` samples on ``device``, as plain values
        to record beside the results it produced."""
        resolved = self.resolve(n, device)
        return {"block_size": resolved.block_size, "channels_last": resolved.channels_last,
                "device": str(torch.device(device))}


def block_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the fewest blocks of at most ``size`` of ``n`` samples, as
    equal as they can be (100 in blocks of 32: four of 25, not three of 32 and one of 4,
    whose tiny block would cost nearly as much as a full one). One empty block for n=0."""
    count = max(1, -(-n // size))
    bounds = [n * i // count for i in range(count + 1)]
    return list(itertools.pairwise(bounds))


# The modules whose weights an attack may run in channels_last: exactly these types, so
# a subclass that reshapes its weight (``weight.view(...)`` in weight standardisation,
# say) is never handed a tensor it cannot view.
_RELAYOUT_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


@contextmanager
def channels_last_convs(model: nn.Module) -> Iterator[bool]:
    """The model's convolution weights in channels_last (NHWC) for the duration; yields
    whether any weight was changed.

    oneDNN's CPU convolutions are faster on NHWC, and much faster for some shapes: the
    input gradient of a 32->1 channel 3x3 convolution over 64 MNIST images took 15.9 ms
    in NCHW and 1.2 ms in NHWC here (MNIST's one-channel first and last layers are the
    slow cases). A weight in NHWC makes the convolution's output NHWC, so the whole
    network runs in that layout. Same values, same Parameter objects: only ``.data`` is
    swapped, and the caller's own tensors are put back exactly (also if the attack
    raises). Results can differ from NCHW in the last bits of a float.
    """
    swapped: dict[int, tuple[nn.Parameter, Tensor]] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (type(module) in _RELAYOUT_TYPES and isinstance(weight, nn.Parameter)
                and weight.dim() == 4 and weight.is_floating_point()):
            swapped[id(weight)] = (weight, weight.data)
    try:
        for weight, data in swapped.values():
            # Not ``contiguous(memory_format=...)``: with one input channel a weight is
            # already "contiguous" in both layouts and would stay NCHW-strided, and so
            # would the whole network behind it.
            weight.data = torch.empty_like(data, memory_format=torch.channels_last).copy_(data)
        yield bool(swapped)
    finally:
        for weight, data in swapped.values():
            weight.data = data


def run(attack: Algorithm, model: nn.Module, x: Tensor, y: Tensor,
        execution: Execution | None = None) -> AttackResult:
    """``attack`` on the batch ``x`` (N,...) in [0,1] with labels ``y`` (N,) on x's
    device, under ``execution`` (the default policy when None).

    The attack's random draws are made for the whole call, then the batch is attacked
    block by block with the model in ``attack_mode`` (and in NHWC when the policy says
    so). ``success`` is the attack's own mask where it can be trusted; one forward more
    per call decides it where it cannot: when the attack leaves it open, with EOT (fresh
    draws judge, not the ones the attack saw) and after an NHWC run, which ``_again``
    then corrects. So success always means the caller's model, as it is, misclassifies
    ``x_adv``.
    """
    y = _check_inputs(attack.name, x, y)
    x = x.detach()
    plan = (execution or Execution()).resolve(len(x), x.device)
    counted = CountedModel(model, attack.eot)
    draws = attack._draws(x)
    blocks = block_bounds(len(x), plan.block_size)
    with attack_mode(model):
        with torch.enable_grad(), (channels_last_convs(model) if plan.channels_last
                                   else nullcontext(False)) as relaid:
            parts = [attack._attack(counted, x[a:b], y[a:b],
                                    None if draws is None else draws[a:b])
                     for a, b in blocks]
        # One block: its tensors as they are (no copy); several: joined in order.
        x_adv = parts[0][0] if len(parts) == 1 else torch.cat([p[0] for p in parts])
        claims = [p[1] for p in parts]
        claimed = (None if any(c is None for c in claims)
                   else claims[0] if len(claims) == 1 else torch.cat(claims))
        # an attack's own mask knows nothing of rejection (``rejection``): re-judged
        if relaid or claimed is None or attack.eot > 1 or counted.rejects:
            success = torch.cat([counted.fooled(x_adv[a:b], y[a:b]) for a, b in blocks])
            if relaid and claimed is not None:
                x_adv, success = _again(attack, counted, x, y, draws, x_adv, success,
                                        claimed & ~success)
        else:
            success = claimed
    if x.is_contiguous() and not x_adv.is_contiguous():
        x_adv = x_adv.contiguous()  # NHWC gradients can leave x_adv in NHWC
    delta = (x_adv - x).flatten(1)
    return AttackResult(
        x_adv=x_adv.detach(),
        success=success.detach(),
        l2=delta.norm(dim=1),
        linf=delta.abs().amax(dim=1),
        forwards=counted.forwards,
        backwards=counted.backwards,
    )


def _again(attack: Algorithm, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None,
           x_adv: Tensor, success: Tensor, again: Tensor) -> tuple[Tensor, Tensor]:
    """Attack once more, in the model's own layout, the samples the channels_last run
    believed it fooled but whose ``x_adv`` does not fool the model as it is (a
    minimum-norm attack stops just past the boundary, closer than the two layouts' last
    bits sometimes): they get exactly what ``channels_last=False`` gives them. Rare, so
    one call on the few of them."""
    rows = again.nonzero().squeeze(1)
    if len(rows) == 0:
        return x_adv, success
    with torch.enable_grad():
        adv, hit = attack._attack(model, x[rows], y[rows],
                                  None if draws is None else draws[rows.cpu()])
    return x_adv.index_put((rows,), adv), success.index_put((rows,), hit)


def _check_inputs(attack: str, x: Tensor, y: Tensor) -> Tensor:
    """Catch the mistakes that would otherwise give silently wrong numbers."""
    if not torch.is_floating_point(x) or x.dim() < 2:
        raise UserError(
            f"{attack}: x must be a float batch (N, ...), got {x.dtype} {tuple(x.shape)}"
        )
    if y.shape != (x.shape[0],) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise UserError(
            f"{attack}: y must be integer labels of shape ({x.shape[0]},), "
            f"got {y.dtype} {tuple(y.shape)}"
        )
    if x.numel():
        # One pass for both extremes and one host sync (a check per call, on every batch).
        low, high = torch.aminmax(x)
        if bool((low < 0) | (high > 1)):
            raise UserError(
                f"{attack}: x must lie in [0,1] (normalisation belongs inside the model), "
                f"got [{low.item():.4g}, {high.item():.4g}]"
            )
    return y.to(device=x.device, dtype=torch.long)
