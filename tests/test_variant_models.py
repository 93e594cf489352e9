"""The sensitivity experiment's model variants and G readings are what they say they
are: a 1998 LeNet5 has tanh and average pooling, the normalised LeNet5 normalises inside
the model, the linear AE clips only in use, and each G reading differs as defined."""

from __future__ import annotations

import torch
from torch import nn

from aerobust.gradient_measures import gradient_per_image
from aerobust.metrics import gradient_amplitude
from aerobust.models import build_model
from aerobust.models.layers import Normalize


def _layers(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def test_the_1998_lenet5_has_tanh_and_average_pooling() -> None:
    model = build_model("lenet5-1998")
    layers = _layers(model)
    assert nn.Tanh in layers and nn.AvgPool2d in layers
    assert nn.ReLU not in layers and nn.MaxPool2d not in layers
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    built = _layers(build_model("lenet5"))
    assert nn.ReLU in built and nn.MaxPool2d in built and nn.Tanh not in built


def test_the_normalised_lenet5_normalises_inside_the_model() -> None:
    torch.manual_seed(0)
    model = build_model("lenet5-norm").eval()
    assert isinstance(model.normalize, Normalize)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), model.net((x - 0.1307) / 0.3081))


def test_the_linear_ae_has_no_sigmoid_and_clips_only_in_use() -> None:
    torch.manual_seed(0)
    ae = build_model("conv-ae-linear")
    assert nn.Sigmoid not in _layers(ae)
    ae.init_output_bias(0.1307)
    assert torch.allclose(ae.decoder[-2].bias, torch.tensor(0.1307))
    with torch.no_grad():
        ae.decoder[-2].bias.fill_(2.0)  # push the output above 1
        x = torch.rand(2, 1, 28, 28)
        assert ae.train()(x).max() > 1  # trained on the linear output
        out = ae.eval()(x)
    assert out.min() >= 0 and out.max() == 1


def test_g_readings_differ_as_defined() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x, y = torch.rand(5, 1, 8, 8), torch.arange(5)
    l1 = gradient_per_image(model, x, y, "softmax", "l1")
    # The paper's reading: the existing G, image by image.
    assert abs(float(l1.mean()) - gradient_amplitude(model, x, y, "true")) < 1e-6
    assert torch.allclose(gradient_per_image(model, x, y, "softmax", "mean-abs"), l1 / 64)
    assert (gradient_per_image(model, x, y, "softmax", "l2") <= l1).all()
    # A linear model's logit gradient is its weight row, whatever the input.
    logit = gradient_per_image(model, x, y, "logit", "l1")
    assert torch.allclose(logit, model[1].weight[y].abs().sum(1).double())
    assert not torch.allclose(gradient_per_image(model, x, y, "loss", "l1"), logit)
