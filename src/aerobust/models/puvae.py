"""PuVAE (Hwang et al. 2019, arXiv:1903.00585): a class-conditional VAE that purifies an
input by projecting it onto the manifold of each class and keeping the closest
projection, then classifies that projection; one module from images to logits plus a
reject logit (``aerobust.rejection``).

Test time, as in the paper: the input is reconstructed under each of the K labels, the
reconstruction with the lowest root-mean-square error to the input is kept and given to
the classifier, and the input is rejected when that lowest error is above a threshold
set on held-out clean data.

Choices where the paper is silent or we could not verify its values (the report lists
them): the reconstruction under a label decodes the posterior *mean* (no sampling at
test time), so the forward pass is deterministic; the label enters the encoder as K
constant one-hot channels and the decoder concatenated to z; two stride-2 convolutions
(32, 64 filters) and a 32-dimensional latent, the smallest VAE that reconstructs MNIST
digits well; the rejection threshold is the 99th percentile of the held-out clean errors
(false-positive rate 0.01, a setting of ``training.defenses``).

The arg-min over labels is piecewise constant: autograd differentiates through the
chosen reconstruction only, never through the choice, so an attack does not see that a
step changes which label wins. BPDA does not fit (the selection is no stage that returns
its input), so the model offers the audit a differentiable surrogate
(``aerobust.surrogate``): ``surrogate()`` is the model with the hard choice replaced by
a softmin over the per-label errors at ``SURROGATE_TEMPERATURE`` (``SoftPuVAE``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aerobust.rejection import log_excess, with_reject_logit

# The softmin's temperature, in RMSE (pixels in [0,1]): a label whose error is 0.003
# above the best one weighs e^-1 of it. On the bundled digits' 360 test images (the
# trained PuVAE) the best and second-best labels' errors differ by a median 0.042 (a
# 10th percentile of 0.0075), so the surrogate keeps the chosen reconstruction at most
# points and predicts what the model predicts on 98.6% of them (at 0.01: 95.8%; at
# 0.001: 99.7%, but soft only at near-ties): docs/defenses.md#puvae.
SURROGATE_TEMPERATURE = 0.003


class PuVAE(nn.Module):
    """Conditional VAE ``(encode, decode)`` plus the classifier it purifies for."""

    rejects = True

    def __init__(self, classifier: nn.Module, in_channels: int = 1, image_size: int = 28,
                 num_classes: int = 10, latent: int = 32, width: int = 32) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"PuVAE needs an image size divisible by 4, got {image_size}")
        self.classifier = classifier
        self.num_classes = num_classes
        self.latent = latent
        side = image_size // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels + num_classes, width, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(2 * width * side * side, 2 * latent),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent + num_classes, 2 * width * side * side),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (2 * width, side, side)),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, in_channels, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )
        self.register_buffer("threshold", torch.full((1,), torch.inf))

    def encode(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance of z given the image and its label."""
        onehot = F.one_hot(labels, self.num_classes).to(x.dtype)
        planes = onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])
        mu, logvar = self.encoder(torch.cat([x, planes], dim=1)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: Tensor, labels: Tensor) -> Tensor:
        onehot = F.one_hot(labels, self.num_classes).to(z.dtype)
        return self.decoder(torch.cat([z, onehot], dim=1))

    def reconstructions(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The K label-conditioned reconstructions ``(N, K, ...)`` of each input and
        their root-mean-square errors ``(N, K)``; all K in one batch of ``N * K``."""
        n, k = len(x), self.num_classes
        labels = torch.arange(k, device=x.device).repeat(n)
        tiled = x.repeat_interleave(k, dim=0)
        recon = self.decode(self.encode(tiled, labels)[0], labels)
        rmse = (recon - tiled).pow(2).flatten(1).mean(dim=1).sqrt().view(n, k)
        return recon.view(n, k, *x.shape[1:]), rmse

    def purify(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The closest of the K label-conditioned reconstructions of each input, and its
        root-mean-square error ``(N, 1)``."""
        recon, rmse = self.reconstructions(x)
        best = rmse.argmin(dim=1)
        return recon[torch.arange(len(x), device=x.device), best], rmse.gather(1, best[:, None])

    def forward(self, x: Tensor) -> Tensor:
        recon, error = self.purify(x)
        return self.judged(recon, error)

    def judged(self, recon: Tensor, error: Tensor) -> Tensor:
        """The classifier's logits on ``recon`` with the reject logit of ``error``."""
        return with_reject_logit(self.classifier(recon), log_excess(error, self.threshold))

    def surrogate(self, temperature: float = SURROGATE_TEMPERATURE) -> SoftPuVAE:
        """This model with the arg-min over labels made differentiable (``SoftPuVAE``),
        sharing its weights: what the audit attacks PuVAE through."""
        return SoftPuVAE(self, temperature)


class SoftPuVAE(nn.Module):
    """PuVAE's differentiable surrogate: the classifier sees the softmin-weighted mean
    of the K reconstructions, weights ``softmax(-rmse / temperature)``, instead of the
    closest one. Where one label's error is below the others' by many temperatures, the
    weights are one-hot to float precision and the logits are PuVAE's; near a tie the
    gradient says how a step moves the weights, which the hard choice hides. The
    detector's error stays the smallest of the K (a minimum of differentiable functions
    is continuous, and its gradient is the best label's), so the reject logit is
    PuVAE's everywhere."""

    def __init__(self, puvae: PuVAE, temperature: float) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"the softmin needs a positive temperature, got {temperature}")
        self.puvae, self.temperature = puvae, temperature
        self.description = (
            f"PuVAE's arg-min over its {puvae.num_classes} label-conditioned reconstructions "
            f"replaced by a softmin over their RMSE errors at temperature {temperature:g} "
            "(the classifier sees the weighted mean; the detector the smallest error)")

    def forward(self, x: Tensor) -> Tensor:
        recon, rmse = self.puvae.reconstructions(x)
        weights = (-rmse / self.temperature).softmax(dim=1)
        mixed = (weights.view(*weights.shape, *[1] * (recon.dim() - 2)) * recon).sum(dim=1)
        return self.puvae.judged(mixed, rmse.amin(dim=1, keepdim=True))
