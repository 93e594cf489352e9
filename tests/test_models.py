from __future__ import annotations

import pytest
import torch

from aerobust.errors import UserError
from aerobust.models import (
    AEClassifier,
    LatentClassifier,
    build_model,
    model_kind,
)

CLASSIFIERS = ["lenet5", "lenet-substitute", "vgg16", "resnet110", "latent-classifier"]


@pytest.mark.parametrize("arch", CLASSIFIERS)
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_classifier_output_shape(arch: str, channels: int, size: int) -> None:
    model = build_model(arch, in_channels=channels, image_size=size, num_classes=7).eval()
    assert model(torch.rand(3, channels, size, size)).shape == (3, 7)


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_autoencoder_output_is_an_image(channels: int, size: int) -> None:
    ae = build_model("conv-ae", in_channels=channels, image_size=size).eval()
    with torch.no_grad():
        out = ae(torch.rand(2, channels, size, size))
    assert out.shape == (2, channels, size, size)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_autoencoder_has_the_papers_layer_counts() -> None:
    ae = build_model("conv-ae")
    enc = [type(m).__name__ for m in ae.encoder]
    dec = [type(m).__name__ for m in ae.decoder]
    assert enc.count("Conv2d") == 3 and enc.count("MaxPool2d") == 2
    assert dec.count("Conv2d") == 3 and dec.count("ConvTranspose2d") == 2


def test_output_bias_starts_at_mean_pixel() -> None:
    ae = build_model("conv-ae").eval()
    ae.init_output_bias(0.13)
    with torch.no_grad():
        for m in ae.modules():
            if hasattr(m, "weight") and m.weight is not None:
                m.weight.zero_()
        out = ae(torch.rand(1, 1, 28, 28))
    assert torch.allclose(out, torch.full_like(out, 0.13), atol=1e-5)


def test_resnet110_has_110_weighted_layers() -> None:
    model = build_model("resnet110")
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert convs + linears == 110


def test_ae_classifier_passes_gradient_to_its_input() -> None:
    torch.manual_seed(0)
    model = AEClassifier(build_model("conv-ae"), build_model("lenet5")).eval()
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    model(x).logsumexp(1).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # and the gradient goes through the AE: the AE's first conv receives one too
    assert model.autoencoder.encoder[0].weight.grad is not None


def test_latent_classifier_shares_the_encoder_between_outputs() -> None:
    model = LatentClassifier().eval()
    x = torch.rand(2, 1, 28, 28)
    logits, recon = model.forward_both(x)
    assert logits.shape == (2, 10) and recon.shape == (2, 1, 28, 28)
    assert torch.equal(logits, model(x))
    assert torch.equal(recon, model.autoencoder(x))


def test_normalization_is_inside_the_model() -> None:
    vgg = build_model("vgg16")
    assert type(vgg.features[0]).__name__ == "Normalize"


def test_unknown_architecture_and_bad_arguments_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown architecture"):
        build_model("alexnet")
    with pytest.raises(UserError, match="cannot build"):
        build_model("lenet5", widht=3)
    with pytest.raises(UserError, match="divisible by 4"):
        build_model("conv-ae", image_size=30)
    assert model_kind("conv-ae") == "autoencoder"
