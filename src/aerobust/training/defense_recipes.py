"""Each defense's training recipe as phases: which parameters learn, from which loss, on
which batches; ``training.defenses`` runs the phases and the run store keeps the result.

The image classifier C a defense guards is trained first, by the standard loop, and is
frozen here: the defenses are preprocessors and detectors for a given classifier, as in
their papers (the cascade alone trains a classifier of its own, on its codes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aerobust.attacks.pgd import PGD
from aerobust.errors import UserError
from aerobust.models import AEClassifier, ConvAE
from aerobust.models.cascade import CascadeDAE
from aerobust.models.hgd import HGD
from aerobust.models.magnet import MagNet
from aerobust.models.puvae import PuVAE

# (x, y, batch seed, generator) -> loss
StepFn = Callable[[Tensor, Tensor, int, torch.Generator], Tensor]


@dataclass(frozen=True)
class Phase:
    """``epochs`` epochs of Adam on ``modules``' parameters, minimising ``step``."""

    name: str
    modules: tuple[nn.Module, ...]
    step: StepFn


def gaussian(x: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """``x`` plus N(0, sigma^2) noise drawn on the CPU from ``generator`` (the same noise
    on any device), clipped to the image range as MagNet does."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (x + sigma * noise).clamp(0, 1)


def _denoising(ae: nn.Module, sigma: float) -> StepFn:
    def step(x: Tensor, y: Tensor, seed: int, gen: torch.Generator) -> Tensor:
        return F.mse_loss(ae(gaussian(x, sigma, gen)), x)

    return step


def dae_phases(model: AEClassifier, settings: dict[str, Any]) -> list[Phase]:
    """The paper's AE (``ConvAE``) trained to remove Gaussian noise of std ``noise``."""
    return [Phase("denoise", (model.autoencoder,), _denoising(model.autoencoder,
                                                              settings["noise"]))]


def magnet_phases(model: MagNet, settings: dict[str, Any]) -> list[Phase]:
    """AE-I and AE-II on the same noisy batches (noise volume ``noise``), MSE each; their
    parameters are disjoint, so the summed loss trains each as if alone."""
    sigma = settings["noise"]

    def step(x: Tensor, y: Tensor, seed: int, gen: torch.Generator) -> Tensor:
        noisy = gaussian(x, sigma, gen)
        return F.mse_loss(model.ae1(noisy), x) + F.mse_loss(model.ae2(noisy), x)

    return [Phase("autoencoders", (model.ae1, model.ae2), step)]


def puvae_phases(model: PuVAE, settings: dict[str, Any]) -> list[Phase]:
    """Conditional VAE under the true label: ``rc * ||x - x'||^2 + kl * KL(q(z|x,y) ||
    N(0, I)) + ce * CE(C(x'), y)``, the first two summed over an image's pixels and
    latents, all averaged over the batch; z is sampled (reparameterised) in training."""

    def step(x: Tensor, y: Tensor, seed: int, gen: torch.Generator) -> Tensor:
        mu, logvar = model.encode(x, y)
        noise = torch.randn(mu.shape, generator=gen, dtype=mu.dtype).to(mu.device)
        recon = model.decode(mu + (0.5 * logvar).exp() * noise, y)
        rc = (recon - x).pow(2).flatten(1).sum(dim=1).mean()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()
        ce = F.cross_entropy(model.classifier(recon), y)
        return settings["rc"] * rc + settings["kl"] * kl + settings["ce"] * ce

    return [Phase("vae", (model.encoder, model.decoder), step)]


def guide(classifier: nn.Module, layer: str) -> Callable[[Tensor], Tensor]:
    """The high-level representation HGD matches: the logits (LGD), or the output of the
    classifier's last convolutional block, its ``features`` (FGD)."""
    if layer == "logits":
        return classifier
    features = getattr(classifier, "features", None)
    if not isinstance(features, nn.Module):
        raise UserError(f"HGD guide 'features' needs a classifier with a `features` block; "
                        f"{type(classifier).__name__} has none (use guide=logits)")
    return features


def hgd_phases(model: HGD, settings: dict[str, Any]) -> list[Phase]:
    """The denoiser learns to make C's representation of a denoised adversarial input
    match that of the clean input, in L1 (Liao et al. 2018, eq. 3).

    Per batch, PGD against C (``attack_steps`` steps, final iterate, eps ``eps``) and
    each sample's perturbation scaled by a uniform factor in [0, 1): the paper draws
    its attack's eps at random per image, so the denoiser sees every strength from clean
    to full (a scaled PGD perturbation is a valid, not optimal, one of the smaller
    radius)."""
    represent = guide(model.classifier, settings["guide"])

    def step(x: Tensor, y: Tensor, seed: int, gen: torch.Generator) -> Tensor:
        attack = PGD(eps=settings["eps"], steps=settings["attack_steps"], seed=seed,
                     keep="last")
        delta = attack(model.classifier, x, y).x_adv - x
        scale = torch.rand(len(x), generator=gen, dtype=x.dtype).to(x.device)
        x_adv = x + scale.view(-1, *[1] * (x.dim() - 1)) * delta
        with torch.no_grad():
            target = represent(x)
        return F.l1_loss(represent(model.denoise(x_adv)), target)

    return [Phase("denoiser", (model.denoiser,), step)]


def cascade_phases(model: CascadeDAE, settings: dict[str, Any]) -> list[Phase]:
    """Denoiser on noise ``noise``; reducing AE on the denoised clean images; the
    classifier on their codes, each on frozen earlier stages."""

    def reduce_step(x: Tensor, y: Tensor, seed: int, gen: torch.Generator) -> Tensor:
        with torch.no_grad():
            clean = model.dae(x)
        return F.mse_loss(model.expand(model.reduce(clean)), clean)

    def classify_step(x: Tensor, y: Tensor, seed: int, gen: torch.Generator) -> Tensor:
        with torch.no_grad():
            code = model.reduce(model.dae(x))
        return F.cross_entropy(model.head(code), y)

    return [Phase("denoise", (model.dae,), _denoising(model.dae, settings["noise"])),
            Phase("reduce", (model.reduce, model.expand), reduce_step),
            Phase("classify", (model.head,), classify_step)]


PHASES: dict[str, Callable[[Any, dict[str, Any]], list[Phase]]] = {
    "dae": dae_phases, "magnet": magnet_phases, "puvae": puvae_phases, "hgd": hgd_phases,
    "cascade": cascade_phases,
}


def init_decoders(model: nn.Module, mean_pixel: float) -> None:
    """Every ``ConvAE`` inside starts its sigmoid at the data's mean pixel, as the
    standard loop does (from 0.5, decoders on dark data can collapse to black)."""
    for module in model.modules():
        if isinstance(module, ConvAE):
            module.init_output_bias(mean_pixel)


@torch.no_grad()
def detector_scores(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """``(N, K)`` clean scores of a rejecting defense's K detectors, for its thresholds."""
    device = next(model.parameters()).device
    parts = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)
        if isinstance(model, MagNet):
            parts.append(model.scores(xb))
        else:
            assert isinstance(model, PuVAE)
            parts.append(model.purify(xb)[1])
    return torch.cat(parts).cpu()
