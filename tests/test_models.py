"""Model construction: initial weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lifelong_kd.errors import ConfigError
from lifelong_kd.models import build_model
from lifelong_kd.presets import build_config


def test_xavier_init_gives_uniform_linear_weights_in_glorot_bound_and_zero_bias():
    config = build_config("split-digits", "naive", {"model.init": "xavier", "model.hidden": "300,200"})
    torch.manual_seed(0)
    model = build_model(config.model, (1, 28, 28), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(300, 784), (200, 300), (10, 200)]
    for m in linears:
        fan_out, fan_in = m.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = m.weight.detach()
        assert float(w.abs().max()) <= bound
        # a uniform on (-a, a) has variance a^2 / 3; 60000 draws give it to a few percent
        assert float(w.var()) == pytest.approx(bound**2 / 3, rel=0.05)
        assert torch.count_nonzero(m.bias) == 0


def test_default_init_is_pytorchs_and_differs_from_xavier():
    default = build_config("split-digits", "naive", {"model.hidden": "400"})
    assert default.model.init == "default"
    torch.manual_seed(0)
    a = build_model(default.model, (1, 8, 8), 10)
    torch.manual_seed(0)
    b = nn.Linear(64, 400)
    assert torch.equal(a.backbone[1].weight, b.weight)
    assert torch.count_nonzero(a.backbone[1].bias) > 0


def test_unknown_init_is_rejected_naming_the_valid_ones():
    with pytest.raises(ConfigError, match=r"model.init.*'he'.*default.*xavier"):
        build_config("split-digits", "naive", {"model.init": "he"})


@pytest.mark.parametrize("name", ["convnet", "resnet18"])
def test_conv_models_run_channels_last_with_the_same_function(name):
    """The NHWC layout is a layout only: outputs and gradients match a contiguous copy."""
    config = build_config("split-digits", "naive", {"model.name": name, "model.nf": "4"})
    torch.manual_seed(0)
    model = build_model(config.model, (3, 16, 16), 10).eval()
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(5, 3, 16, 16)
    out = model(x)
    plain = build_model(config.model, (3, 16, 16), 10).eval()
    plain.load_state_dict(model.state_dict())
    plain.to(memory_format=torch.contiguous_format)
    assert not next(m for m in plain.modules() if isinstance(m, nn.Conv2d)).weight.is_contiguous(
        memory_format=torch.channels_last)
    assert torch.allclose(out, plain(x), atol=1e-5)
    out.sum().backward()
    plain(x).sum().backward()
    for p, q in zip(model.parameters(), plain.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-4)


def test_resnet_gradients_match_a_float64_reference_at_every_seed():
    """A narrow ResNet (nf = 4: 1x1 shortcuts with 4 input channels and stride 2, the case
    oneDNN's channels-last kernel gets wrong now and then) gets the gradient of a float64
    contiguous copy, seed after seed."""
    config = build_config("split-digits", "naive", {"model.name": "resnet18", "model.nf": "4"})
    for seed in range(20):
        torch.manual_seed(seed)
        model = build_model(config.model, (3, 16, 16), 10).eval()
        reference = build_model(config.model, (3, 16, 16), 10).eval()
        reference.load_state_dict(model.state_dict())
        reference.to(memory_format=torch.contiguous_format).double()
        x = torch.randn(5, 3, 16, 16)
        model(x).sum().backward()
        reference(x.double()).sum().backward()
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            assert torch.allclose(p.grad.double(), q.grad, atol=1e-4), (seed, name)


def test_convnet_pool_before_relu_is_conv_relu_pool():
    """max-pool commutes with ReLU: the ConvNet is the textbook conv-ReLU-pool network."""
    config = build_config("split-digits", "naive", {"model.name": "convnet"})
    torch.manual_seed(0)
    model = build_model(config.model, (3, 32, 32), 10)
    b = model.backbone
    textbook = nn.Sequential(b[0], nn.ReLU(), nn.MaxPool2d(2), b[3], nn.ReLU(), nn.MaxPool2d(2),
                             *list(b)[6:])
    x = torch.randn(8, 3, 32, 32, requires_grad=True)
    ours = model.features(x)
    theirs = textbook(x)
    assert torch.allclose(ours, theirs, atol=1e-6)
    (g_ours,) = torch.autograd.grad(ours.square().sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.square().sum(), x)
    assert torch.allclose(g_ours, g_theirs, atol=1e-5)


# ------------------------------------------------- the backbones of the class-incremental papers


def _counts(model: nn.Module) -> tuple[int, int]:
    return (sum(p.numel() for p in model.parameters()),
            sum(b.numel() for b in model.buffers()))


def test_resnet32_has_the_references_shape_and_size():
    """FACIL's resnet32 (src/networks/resnet32.py@74a826f, its own code run outside the
    project: 466,906 parameters, 2,497 buffer values with 10 outputs) has projection
    shortcuts; PyCIL's (convs/cifar_resnet.py@25e8156) zero-padding ones, without those two
    1x1 convolutions and their batch norms (466,906 - 576 - 2,176 = 464,154)."""
    from lifelong_kd.models import ResNet32

    facil = ResNet32((3, 32, 32), 10, shortcut="projection")
    pycil = ResNet32((3, 32, 32), 10, shortcut="zeros")
    assert _counts(facil) == (466_906, 2_497)
    assert _counts(pycil)[0] == 464_154
    x = torch.randn(2, 3, 32, 32)
    for model in (facil, pycil):
        maps = model.feature_maps(x)
        assert [tuple(m.shape) for m in maps] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
        features, logits = model.forward_features(x)
        assert features.shape == (2, 64) and logits.shape == (2, 10)
        # the features are the last stage's maps, averaged
        assert torch.allclose(features, maps[-1].mean(dim=(2, 3)), atol=1e-6)


def test_the_zero_padding_shortcut_is_every_second_pixel_then_zeros():
    from lifelong_kd.models import _ZeroPadShortcut

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    out = _ZeroPadShortcut(2)(x)
    assert out.shape == (2, 6, 2, 2)
    assert torch.equal(out[:, :3], x[:, :, ::2, ::2]) and not out[:, 3:].any()


def test_lenet_is_facils_and_refuses_images_too_small():
    """FACIL's LeNet (src/networks/lenet.py@74a826f): 44,426 parameters on 28x28 MNIST with
    10 outputs, 84 features; Split-Digits' 8x8 images are refused before any data is read."""
    from lifelong_kd.models import LeNet

    lenet = LeNet((1, 28, 28), 10)
    assert _counts(lenet) == (44_426, 0)
    features, logits = lenet.forward_features(torch.randn(3, 1, 28, 28))
    assert features.shape == (3, 84) and logits.shape == (3, 10)
    with pytest.raises(ConfigError, match="`model.name` = 'lenet' needs images of at least 16"):
        build_config("split-digits", "naive", {"model.name": "lenet"})
    with pytest.raises(ConfigError, match="at least 16 x 16 pixels; these are 8 x 8"):
        LeNet((1, 8, 8), 10)


@pytest.mark.parametrize("name", ["resnet32", "resnet32-facil", "lenet"])
def test_the_new_backbones_build_from_the_configuration(name):
    config = build_config("permuted-mnist", "naive", {"model.name": name})
    model = build_model(config.model, (1, 28, 28), 10)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
