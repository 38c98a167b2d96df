"""Networks: a backbone that gives features, and one linear head over every output unit.

A "head per task" (task-il, ``model.head = multi``) is the slice of the head's units that
belongs to the task (see ``data/streams.py``): one ``nn.Linear`` with ``n_tasks * k`` outputs is
the same function as ``n_tasks`` heads with ``k`` outputs each, and it runs as one matrix
product. Every model has ``features(x)`` (the penultimate representation, used by feature
distillation) and ``head``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .errors import ConfigError


class Model(nn.Module):
    """Backbone + linear head. Subclasses set ``self.backbone`` and ``self.head``.

    Convolutional models keep their conv weights channels-last (NHWC): PyTorch then runs
    every convolution in that layout, whatever the input's, and oneDNN's CPU convolutions are
    fastest in it (a layout only: the values and the function are the same).
    """

    backbone: nn.Module
    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return f, self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(Model):
    """Fully connected ReLU network on flattened inputs, e.g. 784-400-400-10."""

    def __init__(self, input_shape: tuple[int, int, int], hidden: tuple[int, ...], n_outputs: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_shape[0] * input_shape[1] * input_shape[2]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_outputs)


class ConvNet(Model):
    """A small CNN, fast on CPU: per entry of ``channels`` a 3x3 conv, ReLU and 2x2 max-pool,
    then a 256-unit ReLU layer.

    The pool runs before the ReLU: max-pooling commutes with any non-decreasing function,
    max(relu(a), relu(b)) = relu(max(a, b)), so conv-pool-ReLU is the same function (and
    gradient) as conv-ReLU-pool, with the ReLU on a quarter of the values.
    """

    def __init__(self, input_shape: tuple[int, int, int], channels: tuple[int, ...], n_outputs: int):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.MaxPool2d(2), nn.ReLU()]
            c, h, w = out, h // 2, w // 2
        layers += [nn.Flatten(), nn.Linear(c * h * w, 256), nn.ReLU()]
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Linear(256, n_outputs)
        self.to(memory_format=torch.channels_last)


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (He et al. 2016); a 1x1 convolution where the
    shape changes.

    The shortcut's 1x1 convolution with stride s is the stride-1 convolution of every s-th
    pixel, and runs as that (the same function and weights): PyTorch 2.14's CPU build
    (oneDNN's ``jit_1x1`` kernel) gets the weight gradient of a channels-last 1x1
    convolution with stride 2 and fewer input channels than its block (8 on AVX2) wrong now
    and then, and with one thread corrupts the heap (oneDNN issue 6035: it writes past the
    buffer of its own "reduce to unit stride" step). Taking the pixels here skips that step.
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.step = stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x[:, :, :: self.step, :: self.step]))


class _ResNetBackbone(nn.Module):
    def __init__(self, c_in: int, nf: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, nf, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(nf)
        blocks: list[nn.Module] = []
        c = nf
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            for s in (stride, 1):
                blocks.append(_BasicBlock(c, nf * mult, s))
                c = nf * mult
        self.layers = nn.Sequential(*blocks)
        self.out_features = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


class ReducedResNet18(Model):
    """ResNet-18 with widths nf, 2nf, 4nf, 8nf (nf = 20): the network of GEM (Lopez-Paz &
    Ranzato 2017) that Mammoth and Avalanche use for Split-CIFAR. Its batch norm runs in eval
    mode whenever the model is a frozen teacher."""

    def __init__(self, input_shape: tuple[int, int, int], nf: int, n_outputs: int):
        super().__init__()
        self.backbone = _ResNetBackbone(input_shape[0], nf)
        self.head = nn.Linear(self.backbone.out_features, n_outputs)
        self.to(memory_format=torch.channels_last)


class _ZeroPadShortcut(nn.Module):
    """The parameter-free shortcut of He et al. 2016 (section 4.2, option A) where a block
    halves the resolution and doubles the channels: every second pixel, the new channels
    zero (PyCIL ``convs/cifar_resnet.py`` ``DownsampleA``: a 1x1 average pool of stride 2, then
    the input and its zeros concatenated)."""

    def __init__(self, stride: int):
        super().__init__()
        self.step = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.step, :: self.step]
        return torch.cat([x, torch.zeros_like(x)], 1)


class _CifarBlock(_BasicBlock):
    """A basic block of the CIFAR ResNets (He et al. 2016, section 4.2) with the shortcut of
    ``shortcut``: ``projection`` (a 1x1 convolution and batch norm where the shape changes:
    FACIL's ``resnet32``) or ``zeros`` (:class:`_ZeroPadShortcut`: PyCIL's)."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str):
        super().__init__(c_in, c_out, stride)
        if shortcut == "zeros" and (stride != 1 or c_in != c_out):
            self.shortcut = _ZeroPadShortcut(stride)
            self.step = 1  # the shortcut subsamples itself


class ResNet32(Model):
    """ResNet-32 for 32x32 images (He et al. 2016, section 4.2: a 3x3 convolution of 16
    channels, then three stages of five basic blocks of 16, 32 and 64 channels, the second
    and third halving the resolution, global average pooling; 64 features): the
    class-incremental CIFAR backbone of FACIL (``src/networks/resnet32.py``@74a826f: projection
    shortcuts, ``shortcut = projection``, 466,906 parameters with 10 outputs) and PyCIL
    (``convs/cifar_resnet.py``@25e8156: zero-padding shortcuts, ``shortcut = zeros``, 464,154).
    Convolutions start from He initialisation (normal, fan-out, as both libraries do), batch
    norms at weight 1 and bias 0. :meth:`feature_maps` gives each stage's output (PODNet and
    LwM distil them)."""

    def __init__(self, input_shape: tuple[int, int, int], n_outputs: int, shortcut: str):
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False),
                             nn.BatchNorm2d(16), nn.ReLU())
        stages: list[nn.Module] = []
        c = 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = [_CifarBlock(c, width, stride, shortcut)]
            blocks += [_CifarBlock(width, width, 1, shortcut) for _ in range(4)]
            stages.append(nn.Sequential(*blocks))
            c = width
        #: the stem, the three stages, the pooling: ``backbone[1:4]`` are the stages
        self.backbone = nn.Sequential(stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, n_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.to(memory_format=torch.channels_last)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each of the three stages (16x32x32, 32x16x16, 64x8x8 for CIFAR)."""
        maps, out = [], self.backbone[0](x)
        for stage in self.backbone[1:4]:
            out = stage(out)
            maps.append(out)
        return maps


#: The smallest side the LeNet takes: two 5x5 convolutions without padding, each halved.
LENET_MIN_SIDE = 16


class LeNet(Model):
    """The LeNet of FACIL's MNIST experiments (``src/networks/lenet.py``@74a826f): two 5x5
    convolutions (6 and 16 channels, no padding) each followed by ReLU and a 2x2 max-pool,
    then fully connected layers of 120 and 84 ReLU units (the features) and the head; 44,426
    parameters on 28x28 images with 10 outputs."""

    def __init__(self, input_shape: tuple[int, int, int], n_outputs: int):
        super().__init__()
        c, h, w = input_shape
        if min(h, w) < LENET_MIN_SIDE:
            raise ConfigError(f"the LeNet needs images of at least {LENET_MIN_SIDE} x "
                              f"{LENET_MIN_SIDE} pixels; these are {h} x {w}")
        h, w = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        self.backbone = nn.Sequential(
            nn.Conv2d(c, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * h * w, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.head = nn.Linear(84, n_outputs)


#: name -> builder(config, input_shape, n_outputs). Add a model here.
MODELS: dict[str, Callable[[ModelConfig, tuple[int, int, int], int], Model]] = {
    "mlp": lambda c, shape, n: MLP(shape, c.hidden, n),
    "convnet": lambda c, shape, n: ConvNet(shape, c.channels, n),
    "resnet18": lambda c, shape, n: ReducedResNet18(shape, c.nf, n),
    "resnet32": lambda c, shape, n: ResNet32(shape, n, shortcut="zeros"),
    "resnet32-facil": lambda c, shape, n: ResNet32(shape, n, shortcut="projection"),
    "lenet": lambda c, shape, n: LeNet(shape, n),
}

MODEL_DESCRIPTIONS = {
    "mlp": "fully connected ReLU network (model.hidden, default 400,400)",
    "convnet": "small CNN: 3x3 conv, 2x2 max-pool, ReLU (= conv-ReLU-pool) per model.channels "
               "(default 32,64), then 256 units; channels-last",
    "resnet18": "reduced ResNet-18 of GEM/Mammoth/Avalanche, width model.nf (default 20)",
    "resnet32": "ResNet-32 of He et al. 2016 for CIFAR with zero-padding shortcuts, as PyCIL's",
    "resnet32-facil": "ResNet-32 for CIFAR with projection shortcuts, as FACIL's",
    "lenet": "FACIL's LeNet for MNIST: conv 6, conv 16 (5x5, max-pool), 120, 84 units",
}


def xavier_init(model: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every ``nn.Linear`` (Glorot & Bengio 2010):
    W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)); what Mammoth's ``backbone.xavier`` does."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def model_size(
    config: ModelConfig, input_shape: tuple[int, int, int], n_outputs: int
) -> tuple[int, int]:
    """(parameters, bytes of the parameters and buffers) of the model ``config`` describes,
    counted on the meta device: nothing is allocated and the global random generator is left
    as it was."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = MODELS[config.name](config, input_shape, n_outputs)
    n_params = sum(p.numel() for p in model.parameters())
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return n_params, size


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (Linux: ``os.sysconf``); None if unknown."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def _setting(config: ModelConfig) -> str:
    """The setting that sizes the model, as the user would write it (``[16384]*64``)."""
    key = {"mlp": "hidden", "convnet": "channels", "resnet18": "nf"}.get(config.name)
    if key is None:
        return f"`model.name` = {config.name!r}"
    value = getattr(config, key)
    if isinstance(value, tuple):
        shown = f"[{value[0]}]*{len(value)}" if len(value) > 3 and len(set(value)) == 1 \
            else str(list(value))
    else:
        shown = str(value)
    return f"`model.{key}` = {shown}"


def check_model_size(
    config: ModelConfig, input_shape: tuple[int, int, int], n_outputs: int,
    memory: int | None = None,
) -> None:
    """Refuse (ConfigError) a model whose weights alone exceed the machine's physical memory
    (``memory`` bytes; default :func:`physical_memory`), before any of it is allocated: it
    could only end in the machine swapping or the process being killed. Nothing is refused
    when the memory cannot be known."""
    memory = physical_memory() if memory is None else memory
    if memory is None:
        return
    n_params, size = model_size(config, input_shape, n_outputs)
    if size > memory:
        raise ConfigError(
            f"the `{config.name}` model of {_setting(config)} has {n_params:,} parameters: "
            f"{size / 1e9:.1f} GB for its weights alone, more than this machine's "
            f"{memory / 1e9:.1f} GB of memory; choose a smaller model"
        )


def build_model(config: ModelConfig, input_shape: tuple[int, int, int], n_outputs: int) -> Model:
    """Build the model named by ``config.name`` (weights from the global torch RNG), with the
    initial weights of ``config.init``; a model too large for the machine's memory is refused
    first (:func:`check_model_size`)."""
    check_model_size(config, input_shape, n_outputs)
    model = MODELS[config.name](config, input_shape, n_outputs)
    if config.init == "xavier":
        xavier_init(model)
    return model
