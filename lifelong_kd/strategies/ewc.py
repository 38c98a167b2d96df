"""Elastic weight consolidation (Kirkpatrick et al. 2017) and the exact diagonal Fisher
information it needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..config import MemoryConfig, check_choice, check_positive, check_range
from .base import Batch, Strategy, TaskContext
from .options import Options

FISHERS = ("true", "empirical")


@dataclass(frozen=True)
class EWCOptions(Options):
    """The options of :class:`EWC`."""

    #: Weight of the quadratic penalty.
    ewc_lambda: float = 100.0
    #: Online EWC (Schwarz et al. 2018) with decay ``ewc_gamma``.
    ewc_online: bool = False
    ewc_gamma: float = 1.0
    #: Training examples used to estimate the Fisher information (0: all).
    fisher_samples: int = 1000
    #: ``true`` Fisher (expectation over the model's own predictive distribution) or
    #: ``empirical`` (the squared gradients of the examples' labels).
    ewc_fisher: str = "true"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("strategy.fisher_samples", self.fisher_samples, 0, 10_000_000)
        check_choice("strategy.ewc_fisher", self.ewc_fisher, FISHERS)
        check_positive("strategy.ewc_lambda", self.ewc_lambda, strict=False)
        check_range("strategy.ewc_gamma", self.ewc_gamma, 0, 1)


class EWC(Strategy):
    """Elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3).

    After each task k the diagonal Fisher information F^k of the parameters is estimated on
    ``fisher_samples`` of its training examples (0: all; a seeded random subset), and the
    parameters theta*^k are kept as the anchor. Training task t minimises::

        CE + sum_{k < t} (lambda/2) sum_i F^k_i (theta_i - theta*^k_i)^2,   lambda = ewc_lambda

    (one penalty per earlier task, as Kirkpatrick et al. do for a third task). The Fisher is

        F_i = (1/N) sum_n sum_y p(y | x_n) (d log p(y | x_n) / d theta_i)^2   (``true``)
        F_i = (1/N) sum_n (d log p(y_n | x_n) / d theta_i)^2                 (``empirical``)

    with p the softmax over the outputs the example's task trained (its row of
    ``train_masks``), computed from per-example gradients with the model in eval mode.

    ``ewc_online`` is online EWC (Schwarz et al. 2018, "Progress & compress"): a single
    accumulated Fisher F* = gamma F*_prev + F^k and the latest parameters as the anchor, with
    penalty (lambda/2) sum_i gamma F*_i (theta_i - theta*_i)^2, gamma = ``ewc_gamma``, as in
    van de Ven et al.'s ``ewc_loss`` (models/cl/continual_learner.py).
    """

    Options = EWCOptions
    options: EWCOptions

    def __init__(self, options: EWCOptions | None = None, memory: MemoryConfig | None = None):
        super().__init__(options, memory)
        #: One entry per consolidated task (a single one when online): name -> tensor.
        self.fishers: list[dict[str, torch.Tensor]] = []
        self.anchors: list[dict[str, torch.Tensor]] = []

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        """(lambda/2) sum_k sum_i F^k_i (theta_i - theta*^k_i)^2 (times gamma when online)."""
        params = dict(model.named_parameters())
        total = next(iter(params.values())).new_zeros(())
        scale = self.options.ewc_gamma if self.options.ewc_online else 1.0
        for fisher, anchor in zip(self.fishers, self.anchors, strict=True):
            for name, f in fisher.items():
                total = total + (f * (params[name] - anchor[name]).pow(2)).sum()
        return 0.5 * self.options.ewc_lambda * scale * total

    def loss(
        self, ctx: TaskContext, batch: Batch, features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        ce = self.ce(ctx, batch, logits)
        if not self.fishers or self.options.ewc_lambda == 0:
            return ce
        return ce + self.penalty(ctx.model)

    def fisher(self, ctx: TaskContext) -> dict[str, torch.Tensor]:
        """The diagonal Fisher of ``ctx.model`` on (a seeded subset of) the task's training
        data. The subset is drawn from a generator of its own, seeded by (seed, task), so
        that it does not depend on how many batches were drawn before."""
        data = ctx.current_train_data
        assert data is not None, "the engine sets ctx.current_train_data before after_task"
        n = len(data)
        keep = n if self.options.fisher_samples <= 0 else min(n, self.options.fisher_samples)
        g = torch.Generator().manual_seed((1_000_003 * ctx.config.seed + ctx.index) % 2**63)
        idx = torch.randperm(n, generator=g)[:keep]
        x = ctx.prepare(data.x[idx])
        masks = ctx.train_masks[data.t[idx].to(ctx.device)]
        y = data.y[idx].to(ctx.device)
        return diagonal_fisher(ctx.model, x, masks, y, self.options.ewc_fisher)

    def after_task(self, ctx: TaskContext) -> None:
        fisher = self.fisher(ctx)
        anchor = {n: p.detach().clone() for n, p in ctx.model.named_parameters()
                  if p.requires_grad}
        if self.options.ewc_online and self.fishers:
            gamma = self.options.ewc_gamma
            fisher = {n: gamma * self.fishers[0][n] + f for n, f in fisher.items()}
            self.fishers, self.anchors = [fisher], [anchor]
        else:
            self.fishers.append(fisher)
            self.anchors.append(anchor)

    def state_dict(self) -> dict[str, Any]:
        return {"fishers": self.fishers, "anchors": self.anchors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fishers = list(state.get("fishers", []))
        self.anchors = list(state.get("anchors", []))


def diagonal_fisher(
    model: torch.nn.Module,
    x: torch.Tensor,
    masks: torch.Tensor,
    y: torch.Tensor,
    kind: str = "true",
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher information of ``model``'s parameters on the examples ``x``.

    ``masks[n]`` marks the outputs the softmax of example n spans. With
    g_{n,c} = d log p(c | x_n) / d theta:

    - ``kind = true``: F_i = (1/N) sum_n sum_c p(c | x_n) g_{n,c,i}^2, the expectation over the
      model's own predictive distribution, summed exactly over the active outputs
      (Kirkpatrick et al. 2017, methods; van de Ven et al.'s ``fisher_labels = 'all'``);
    - ``empirical``: F_i = (1/N) sum_n g_{n,y_n,i}^2 with the examples' own labels (see
      Martens 2020, "New insights and perspectives on the natural gradient method", 11).

    The model is in eval mode meanwhile. Models built of ``Linear``, ``Conv2d`` and
    ``BatchNorm`` layers (all of ours) take a fast exact path: one backward pass per class
    gives each layer's per-example output gradients d_n, and the squared per-example weight
    gradients are summed without being stored one by one (for a linear layer
    sum_n w_n (d_n a_n^T)^2 = (w d^2)^T a^2, a_n the layer's input). Any other model falls
    back to per-example gradients from ``torch.func.vmap``.
    """
    was_training = model.training
    model.eval()
    try:
        try:
            return _fisher_by_layers(model, x, masks, y, kind)
        except _Unsupported:
            return _fisher_by_vmap(model, x, masks, y, kind)
    finally:
        model.train(was_training)


class _Unsupported(Exception):
    """The model has a layer the fast Fisher path cannot handle."""


def _class_weights(
    model: torch.nn.Module, xb: torch.Tensor, mb: torch.Tensor, yb: torch.Tensor, kind: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(class index per example, weight per example) pairs whose weighted squared gradients
    sum to the Fisher: the label with weight 1 (empirical), or each active output c with
    weight p(c | x) (true)."""

    if kind == "empirical":
        return [(yb, torch.ones(len(yb), device=xb.device))]
    with torch.no_grad():
        probs = F.softmax(model(xb).masked_fill(~mb, float("-inf")), dim=1)
    active = mb.any(dim=0).nonzero().flatten().tolist()
    return [(torch.full_like(yb, c), probs[:, c]) for c in active]


def _fisher_by_layers(
    model: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor, y: torch.Tensor, kind: str
) -> dict[str, torch.Tensor]:

    layers: list[tuple[str, nn.Module]] = []
    for prefix, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise _Unsupported
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if module.running_mean is None or module.running_var is None:
                raise _Unsupported
        elif not isinstance(module, nn.Linear):
            raise _Unsupported
        layers.append((prefix, module))
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    widest = max((p.numel() for p in fisher.values()), default=1)
    chunk = max(1, min(256, 2**24 // widest))
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen[module] = (inputs[0].detach(), output)

    def add(name: str, value: torch.Tensor) -> None:
        if name in fisher:
            fisher[name] += value.reshape(fisher[name].shape)

    handles = [m.register_forward_hook(keep) for _, m in layers]
    try:
        for start in range(0, len(x), chunk):
            xb, mb, yb = x[start:start + chunk], masks[start:start + chunk], y[start:start + chunk]
            pairs = _class_weights(model, xb, mb, yb, kind)
            seen.clear()
            with torch.enable_grad():
                logits = model(xb.detach().requires_grad_(True))
                log_p = F.log_softmax(logits.masked_fill(~mb, float("-inf")), dim=1)
                outputs = [seen[m][1] for _, m in layers]
                for c, weight in pairs:
                    chosen = log_p.gather(1, c.view(-1, 1)).squeeze(1)
                    total = torch.where(mb.gather(1, c.view(-1, 1)).squeeze(1), chosen, 0.0).sum()
                    grads = torch.autograd.grad(total, outputs, retain_graph=True)
                    for (prefix, module), d in zip(layers, grads, strict=True):
                        a = seen[module][0]
                        for suffix, value in _squared_grads(module, a, d.detach(), weight):
                            add(f"{prefix}.{suffix}" if prefix else suffix, value)
    finally:
        for h in handles:
            h.remove()
    return {n: f / max(len(x), 1) for n, f in fisher.items()}


def _squared_grads(
    module: torch.nn.Module, a: torch.Tensor, d: torch.Tensor, w: torch.Tensor
) -> list[tuple[str, torch.Tensor]]:
    """sum_n w_n (per-example gradient of each parameter of ``module``)^2, from the layer's
    input ``a`` and the gradient ``d`` of its output, for examples n of the batch."""

    out: list[tuple[str, torch.Tensor]] = []
    if isinstance(module, nn.Linear):
        if a.dim() != 2:
            raise _Unsupported
        wd2 = w[:, None] * d.pow(2)
        out.append(("weight", wd2.T @ a.pow(2)))
        if module.bias is not None:
            out.append(("bias", wd2.sum(dim=0)))
    elif isinstance(module, nn.Conv2d):
        cols = F.unfold(a, module.kernel_size, module.dilation, module.padding, module.stride)
        dd = d.flatten(2)  # (B, out, P)
        per_example = torch.bmm(dd, cols.transpose(1, 2))  # (B, out, in * k * k)
        out.append(("weight", (w[:, None, None] * per_example.pow(2)).sum(dim=0)))
        if module.bias is not None:
            out.append(("bias", (w[:, None] * dd.sum(dim=2).pow(2)).sum(dim=0)))
    else:  # batch norm in eval mode: y = gamma * (a - mean) / sqrt(var + eps) + beta
        assert isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))
        shape = (1, -1) + (1,) * (a.dim() - 2)
        assert module.running_mean is not None and module.running_var is not None
        x_hat = (a - module.running_mean.view(shape)) / torch.sqrt(
            module.running_var.view(shape) + module.eps)
        dims = tuple(range(2, a.dim()))
        g_weight = (d * x_hat).sum(dim=dims) if dims else d * x_hat
        g_bias = d.sum(dim=dims) if dims else d
        if module.weight is not None:
            out.append(("weight", (w[:, None] * g_weight.pow(2)).sum(dim=0)))
        if module.bias is not None:
            out.append(("bias", (w[:, None] * g_bias.pow(2)).sum(dim=0)))
    return out


def _fisher_by_vmap(
    model: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor, y: torch.Tensor, kind: str
) -> dict[str, torch.Tensor]:

    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    n_params = sum(p.numel() for p in params.values())
    chunk = max(1, min(256, 2**24 // max(n_params, 1)))

    def log_prob(p: dict[str, torch.Tensor], xi: torch.Tensor, mi: torch.Tensor,
                 ci: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))[0]
        log_p = F.log_softmax(logits.masked_fill(~mi, float("-inf")), dim=0)
        return log_p.gather(0, ci.view(1)).squeeze(0)

    per_example = vmap(grad(log_prob), in_dims=(None, 0, 0, 0))
    for start in range(0, len(x), chunk):
        xb, mb, yb = x[start:start + chunk], masks[start:start + chunk], y[start:start + chunk]
        for c, weight in _class_weights(model, xb, mb, yb, kind):
            grads = per_example(params, xb, mb, c)
            for name, g in grads.items():
                w = weight.view(-1, *([1] * (g.dim() - 1)))
                fisher[name] += (w * g.detach().pow(2)).sum(dim=0)
    return {n: f / max(len(x), 1) for n, f in fisher.items()}
