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
(false-positive rate 0.01, a setting of ``training.defenses``). The arg-min over labels
is piecewise constant: gradients flow through the chosen reconstruction only, not
through the choice (the audit's BPDA/EOT rungs are what handle that).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aerobust.rejection import log_excess, with_reject_logit


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

    def purify(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The closest of the K label-conditioned reconstructions of each input, and its
        root-mean-square error; all K in one batch of ``N * K``."""
        n, k = len(x), self.num_classes
        labels = torch.arange(k, device=x.device).repeat(n)
        tiled = x.repeat_interleave(k, dim=0)
        recon = self.decode(self.encode(tiled, labels)[0], labels)
        rmse = (recon - tiled).pow(2).flatten(1).mean(dim=1).sqrt().view(n, k)
        best = rmse.argmin(dim=1)
        chosen = recon.view(n, k, *x.shape[1:])[torch.arange(n, device=x.device), best]
        return chosen, rmse.gather(1, best[:, None])

    def forward(self, x: Tensor) -> Tensor:
        recon, error = self.purify(x)
        return with_reject_logit(self.classifier(recon), log_excess(error, self.threshold))
