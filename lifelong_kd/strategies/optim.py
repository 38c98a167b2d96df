"""The optimiser of a phase: :func:`make_optimizer` builds ``train.optimizer`` (SGD or Adam)
with the run's settings, over the parameters a :class:`~lifelong_kd.strategies.base.Phase`
names. The engine calls it for every phase; a strategy that trains in a loop of its own (the
Avalanche strategies, ``interop/avalanche.py``) calls it to get the same optimiser.

:class:`EagerSGD` and :class:`EagerAdam` are torch.optim's SGD and Adam without the
``torch._dynamo`` import their guards make (about 2 s of CPU per run), for the runs that compile
nothing: the same kernels, the same numbers bit for bit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from ..config import RunConfig

__all__ = ["EagerAdam", "EagerSGD", "make_optimizer"]


class _Eager:
    """torch.optim's own methods without their ``torch._dynamo`` guards, for a run that
    compiles nothing (``train.compile = false``).

    torch.optim wraps ``step`` (``_use_grad_for_differentiable``) and ``add_param_group``,
    ``state_dict``, ``load_state_dict``, ``zero_grad`` (``torch._disable_dynamo``) in guards
    that import ``torch._dynamo`` on their first call (torch/optim/optimizer.py), about 2 s
    of CPU on this project's 2-core machine, so building any optimiser imported it. Outside
    a compiled function the guards do nothing else, so these methods call the very same
    functions (``inspect.unwrap``) with the same grad mode: the same kernels, the same
    results bit for bit, and ``torch._dynamo`` stays unimported.
    """

    #: torch.optim's own methods of the class (:meth:`__init_subclass__`), wrappers removed.
    _torch: dict[str, Callable[..., Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Look up, once per class, the methods of the torch.optim class after :class:`_Eager`
        in its method order, unwrapped (``inspect.unwrap``)."""
        super().__init_subclass__(**kwargs)
        base = cls.__mro__[cls.__mro__.index(_Eager) + 1]
        cls._torch = {name: inspect.unwrap(getattr(base, name)) for name in (
            "step", "add_param_group", "state_dict", "load_state_dict", "zero_grad")}

    def step(self, closure: Any = None) -> Any:
        prev = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])  # as _use_grad does
            return self._torch["step"](self, closure)
        finally:
            torch.set_grad_enabled(prev)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self._torch["add_param_group"](self, param_group)

    def state_dict(self) -> dict[str, Any]:
        return self._torch["state_dict"](self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._torch["load_state_dict"](self, state_dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._torch["zero_grad"](self, set_to_none)


class EagerSGD(_Eager, torch.optim.SGD):
    """:class:`torch.optim.SGD` without the ``torch._dynamo`` import (:class:`_Eager`)."""


class EagerAdam(_Eager, torch.optim.Adam):
    """:class:`torch.optim.Adam` without the ``torch._dynamo`` import (:class:`_Eager`)."""


def make_optimizer(
    config: RunConfig, params: Any, weight_decay: float | None = None, lr_factor: float = 1.0
) -> torch.optim.Optimizer:
    """The optimiser of ``config.train`` over ``params`` (``weight_decay`` overrides it; the
    learning rate is ``train.lr * lr_factor``):
    torch.optim's SGD or Adam, as :class:`EagerSGD` / :class:`EagerAdam` unless
    ``train.compile`` (which loads ``torch._dynamo`` anyway) is on."""
    train = config.train
    wd = train.weight_decay if weight_decay is None else weight_decay
    # fused: one kernel per parameter for the whole update (CPU and CUDA): the same formula
    # to float rounding, and on a CPU faster than the per-tensor loop (Adam by far the most)
    fused = True if torch.device(train.device).type in ("cpu", "cuda") else None
    if train.optimizer == "adam":
        adam = torch.optim.Adam if train.compile else EagerAdam
        return adam(params, lr=train.lr * lr_factor, betas=(train.betas[0], train.betas[1]), weight_decay=wd,
                    fused=fused)
    sgd = torch.optim.SGD if train.compile else EagerSGD
    return sgd(params, lr=train.lr * lr_factor, momentum=train.momentum, weight_decay=wd, fused=fused)
