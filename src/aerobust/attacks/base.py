"""The one interface every attack implements, its result, and the shared plumbing.

An attack is a frozen dataclass: its fields are its whole configuration (validated in
``__post_init__``), so it is stateless, hashable and can be recorded as ``params()``
beside the results it produced. Calling it runs the attack on one batch.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from aerobust.attacks.losses import describe
from aerobust.errors import UserError


@dataclass
class AttackResult:
    """What an attack did to one batch.

    ``success[i]`` means the model misclassifies ``x_adv[i]`` (untargeted, against the
    label). ``forwards``/``backwards`` count batched passes through the model (summed
    over the blocks the batch was split into), so the cost of attacks can be compared
    independently of hardware.
    """

    x_adv: Tensor
    success: Tensor
    l2: Tensor
    linf: Tensor
    forwards: int
    backwards: int


class Step:
    """One evaluation of a loss at an input (see ``CountedModel.step``): ``logits``
    (N, C; the mean over the draws of a randomised model), per-sample ``loss`` (the mean
    over the draws), ``fooled`` (argmax != y; a majority of the draws with EOT), and
    ``grad``, the input gradient of the summed loss, computed (and counted) only when
    read: an attack that learns from the forward that every sample is fooled skips it.
    """

    def __init__(self, model: CountedModel, x_var: Tensor, total: Tensor, logits: Tensor,
                 loss: Tensor, fooled: Tensor) -> None:
        self._model, self._x_var, self._total = model, x_var, total
        self.logits, self.loss, self.fooled = logits, loss, fooled

    @functools.cached_property
    def grad(self) -> Tensor:
        grad = self._model.grad(self._total, self._x_var)
        del self._total  # frees the graph
        return grad


class CountedModel:
    """The attacked model with a tally of batched passes.

    Attacks only reach the model through this wrapper, so the counts in
    ``AttackResult`` are measured rather than estimated. It is also where Expectation
    over Transformation lives (Athalye et al. 2018): with ``draws = k > 1`` the model is
    random, every forward is ``k`` forwards (counted as ``k`` passes), ``step`` averages
    the loss and its gradient over them, ``__call__`` returns the mean logits, and a
    sample counts fooled when a majority of the draws misclassify it.
    """

    def __init__(self, model: nn.Module, draws: int = 1) -> None:
        self.model = model
        self.draws = draws
        self.forwards = 0
        self.backwards = 0

    def __call__(self, x: Tensor) -> Tensor:
        self.forwards += self.draws
        if self.draws == 1:
            return self.model(x)
        return torch.stack([self.model(x) for _ in range(self.draws)]).mean(dim=0)

    def grad(self, output: Tensor, inputs: Tensor, retain_graph: bool = False) -> Tensor:
        """Gradient of a scalar ``output`` w.r.t. the input only (never the parameters);
        zero where the model's output does not depend on the input through autograd, as
        a defense run under ``no_grad`` makes it: gradient attacks then fail, as they
        would, and the audit's probes say why."""
        self.backwards += 1
        if not output.requires_grad:  # the model cut x off its graph (no_grad, detach)
            return torch.zeros_like(inputs)
        (g,) = torch.autograd.grad(output, inputs, retain_graph=retain_graph, allow_unused=True)
        return torch.zeros_like(inputs) if g is None else g

    def step(self, x: Tensor, y: Tensor, loss: Callable[[Tensor, Tensor], Tensor]) -> Step:
        """Per-sample ``loss(logits, y)`` at ``x`` and its input gradient, averaged over
        the draws: k separate forwards (a defense may draw its randomness once per call)
        and, when ``grad`` is read, one backward through all of them."""
        x_var = x.detach().requires_grad_(True)
        outs = [self.model(x_var) for _ in range(self.draws)]
        self.forwards += self.draws
        losses = torch.stack([loss(out, y) for out in outs])
        total = losses.sum() / self.draws if self.draws > 1 else losses.sum()
        with torch.no_grad():
            wrong = torch.stack([out.argmax(dim=1) != y for out in outs])
            fooled = wrong[0] if self.draws == 1 else 2 * wrong.sum(dim=0) > self.draws
            logits = outs[0] if self.draws == 1 else torch.stack(outs).mean(dim=0)
        return Step(self, x_var, total, logits.detach(), losses.detach().mean(dim=0), fooled)

    @torch.no_grad()
    def fooled(self, x: Tensor, y: Tensor) -> Tensor:
        """Whether ``x`` is misclassified: by a majority of the draws with EOT."""
        self.forwards += self.draws
        wrong = sum((self.model(x).argmax(dim=1) != y).int() for _ in range(self.draws))
        return 2 * wrong > self.draws


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the duration of an attack.

    Train-mode dropout or batch norm would make the attacked function random and let it
    drift (running statistics), and parameter gradients cost memory for nothing. Each
    module's ``training`` flag and each parameter's ``requires_grad`` are restored
    exactly, also when the attack raises, so attacking mid-training is harmless.
    """
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    # Only flags that differ are written (``nn.Module.__setattr__`` is slow, and this
    # runs on every batch): a model already in eval mode, frozen, is left untouched.
    try:
        if any(mode for _, mode in modes):
            model.eval()
        for param, flag in flags:
            if flag:
                param.requires_grad_(False)
        yield model
    finally:
        for module, mode in modes:
            if module.training != mode:
                module.training = mode
        for param, flag in flags:
            if param.requires_grad != flag:
                param.requires_grad_(flag)


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


def linf_box(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per pixel, the lowest and highest value the Linf ball of radius ``eps`` around
    ``x`` allows inside the image range [0,1]: every projection clamps to these."""
    return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)


def batch_view(mask: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector so it broadcasts over the sample dimensions of ``like``."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def check_number(
    attack: str,
    name: str,
    value: object,
    low: float,
    high: float = math.inf,
    *,
    integer: bool = False,
    low_open: bool = False,
) -> None:
    """Raise a one-line ``UserError`` unless ``low <= value <= high`` (``low < value`` if open)."""
    kind = "an integer" if integer else "a number"
    types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, types) or not math.isfinite(value):
        raise UserError(f"{attack}: {name} must be {kind}, got {value!r}")
    if (value <= low if low_open else value < low) or value > high:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{']' if math.isfinite(high) else ')'}"
        raise UserError(f"{attack}: {name} must be in {span}, got {value!r}{_hint(name, value)}")


def check_bool(attack: str, name: str, value: object) -> None:
    """Raise a one-line ``UserError`` unless ``value`` is a bool (not just truthy)."""
    if not isinstance(value, bool):
        raise UserError(f"{attack}: {name} must be true or false, got {value!r}")


def _hint(name: str, value: object) -> str:
    """Epsilons above 1 are almost always given in 0-255 units by mistake."""
    if name == "eps" and isinstance(value, (int, float)) and 1 < value <= 255:
        return f" (attacks use [0,1] pixel units: did you mean {value}/255 = {value / 255:.4g}?)"
    return ""


def block_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the fewest blocks of at most ``size`` of ``n`` samples, as
    equal as they can be (100 in blocks of 32: four of 25, not three of 32 and one of 4,
    whose tiny block would cost nearly as much as a full one). One empty block for n=0."""
    count = max(1, -(-n // size))
    bounds = [n * i // count for i in range(count + 1)]
    return list(itertools.pairwise(bounds))


# Samples per block on the CPU (see ``Attack.block_size``): chosen from the block sweep
# that ``benchmarks/attacks.py`` measures on every run.
CPU_BLOCK_SIZE = 64


@dataclass(frozen=True)
class Attack(ABC):
    """An untargeted white-box attack in [0,1] pixel space: ``attack(model, x, y)``.

    ``block_size`` splits a batch into blocks of at most that many samples, as equal as
    they can be (``block_bounds``), attacked one after the other, exactly as if each
    block were its own call. On a CPU the tensors of a large batch are big enough that
    the allocator hands them back to the system after every pass and the next pass maps
    and zeroes them again (thousands of page faults per call for a batch of 256 MNIST
    images); a block's are small enough to be reused, which measured faster than one
    large batch (``benchmarks/attacks.py`` sweeps block sizes and counts the faults).
    ``None``: ``CPU_BLOCK_SIZE`` samples on a CPU, the whole batch on any other
    device (a GPU wants large batches).
    Per-sample results do not depend on the blocks (random draws are made for the whole
    call first, see ``_draws``), except where an attack decides per call: CW's early
    abort watches the block's total loss.

    ``channels_last`` runs the model's convolutions in NHWC during the attack
    (``channels_last_convs``): on a CPU a forward+backward pass of every model of this
    project measured faster in NHWC (1.05-1.5x; the one-channel MNIST layers most), so
    ``None``, the default, means on for a CPU and off for any other device (not
    measured there); ``True``/``False`` force it. In NHWC the model computes a function
    that may differ from its own in the last bits, so the success mask is not taken
    from inside: every ``x_adv`` is run once more through the model as it is (in the
    same blocks; one forward more per call), ``success`` says what that forward says,
    and a sample the attack believed fooled that is not gets attacked again in the
    model's own layout (``_again``). So success always means the caller's model, as it
    is, misclassifies ``x_adv``.

    ``eot`` (Expectation over Transformation) attacks a randomised model: every forward
    becomes ``eot`` forwards, gradients and losses are averaged over them (the mean
    logits where an attack reads logits itself, as CW and DeepFool do), and success,
    here and in the final check, is a majority of fresh draws (``CountedModel``).
    """

    name: ClassVar[str]
    block_size: int | None = field(default=None, kw_only=True)
    channels_last: bool | None = field(default=None, kw_only=True)
    eot: int = field(default=1, kw_only=True)

    def __post_init__(self) -> None:
        check_number(self.name, "eot", self.eot, 1, integer=True)
        if self.block_size is not None:
            check_number(self.name, "block_size", self.block_size, 1, integer=True)
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise UserError(f"{self.name}: channels_last must be true, false or null (the "
                            f"default: NHWC on a CPU only), got {self.channels_last!r}")

    def params(self) -> dict[str, Any]:
        """The full configuration, defaults resolved, for recording beside results (an
        injected callable is recorded by its qualified name)."""
        return {f.name: describe(getattr(self, f.name)) if callable(getattr(self, f.name))
                else getattr(self, f.name) for f in dataclasses.fields(self)}

    def samples_per_block(self, x: Tensor) -> int:
        """The most samples in one block, for a batch like ``x`` on its device."""
        if self.block_size is not None:
            return self.block_size
        return CPU_BLOCK_SIZE if x.device.type == "cpu" else max(len(x), 1)

    def nhwc(self, x: Tensor) -> bool:
        """Whether a batch like ``x`` is attacked with NHWC convolutions on its device."""
        if self.channels_last is not None:
            return self.channels_last
        return x.device.type == "cpu"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        """Attack the batch ``x`` (N,...) in [0,1] with labels ``y`` (N,) on x's device."""
        y = _check_inputs(self.name, x, y)
        x = x.detach()
        counted = CountedModel(model, self.eot)
        draws = self._draws(x)
        blocks = block_bounds(len(x), self.samples_per_block(x))
        with attack_mode(model):
            with torch.enable_grad(), (channels_last_convs(model) if self.nhwc(x)
                                       else nullcontext(False)) as relaid:
                parts = [self._attack(counted, x[a:b], y[a:b],
                                      None if draws is None else draws[a:b])
                         for a, b in blocks]
            # One block: its tensors as they are (no copy); several: joined in order.
            x_adv = parts[0][0] if len(parts) == 1 else torch.cat([p[0] for p in parts])
            claims = [p[1] for p in parts]
            claimed = (None if any(c is None for c in claims)
                       else claims[0] if len(claims) == 1 else torch.cat(claims))
            if relaid or claimed is None or self.eot > 1:
                # With EOT, fresh draws judge the result, not the ones the attack saw.
                success = torch.cat([counted.fooled(x_adv[a:b], y[a:b]) for a, b in blocks])
                if relaid and claimed is not None:
                    x_adv, success = self._again(counted, x, y, draws, x_adv, success,
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

    def _draws(self, x: Tensor) -> Tensor | None:
        """Random numbers for the whole call, one row per sample, drawn before the batch
        is split, so that no sample's draw depends on the block it lands in; ``_attack``
        gets its block's rows. None: the attack draws none."""
        return None

    def _again(self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None,
               x_adv: Tensor, success: Tensor, again: Tensor) -> tuple[Tensor, Tensor]:
        """Attack once more, in the model's own layout, the samples the channels_last run
        believed it fooled but whose ``x_adv`` does not fool the model as it is (a
        minimum-norm attack stops just past the boundary, closer than the two layouts'
        last bits sometimes): they get exactly what ``channels_last=False`` gives them.
        Rare, so one call on the few of them."""
        rows = again.nonzero().squeeze(1)
        if len(rows) == 0:
            return x_adv, success
        with torch.enable_grad():
            adv, hit = self._attack(model, x[rows], y[rows],
                                    None if draws is None else draws[rows.cpu()])
        return x_adv.index_put((rows,), adv), success.index_put((rows,), hit)

    @abstractmethod
    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Return ``(x_adv, success)`` for one block, without per-sample loops; success
        None: decided by one forward of ``x_adv`` after the attack (as the channels_last
        check does anyway)."""


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
