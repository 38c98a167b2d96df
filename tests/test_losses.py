"""Distillation losses: the properties every registered loss must have, checked as one
parametrised test, and the identities the presets rely on (KL vs soft cross-entropy,
Avalanche's kl_div, Li & Hoiem's y^(1/T) targets, zero padding, sum or mean over heads)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lifelong_kd.losses import LOSSES, grouped_distillation, kl, soft_ce, softmax_entropy

from .test_strategies import batch_of, setup, with_teacher

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPERATURES = (0.5, 1.0, 2.0, 4.0)


def draw(on: str, seed: int, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) outputs: logits (5, 4) or features (5, 6)."""
    g = torch.Generator().manual_seed(seed)
    shape = (5, 4) if on == "logits" else (5, 6)
    return scale * torch.randn(shape, generator=g), scale * torch.randn(shape, generator=g)


def grad_of(loss_fn, student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    s = student.clone().requires_grad_(True)
    loss_fn(s, teacher, T).backward()
    assert s.grad is not None
    return s.grad


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_has_the_properties_of_a_distillation_loss(name):
    loss = LOSSES[name]
    assert loss.on in ("logits", "features") and loss.reference
    for T in TEMPERATURES:
        for seed in range(3):
            s, t = draw(loss.on, seed)
            floor = float(loss.minimum(t, T))
            # at s = t: zero, or the teacher's entropy for soft_ce and bce; a minimum
            assert float(loss.fn(t.clone(), t, T)) == pytest.approx(floor, abs=1e-5)
            assert grad_of(loss.fn, t, t, T).abs().max() < 1e-5
            # anywhere else: not below it (never negative where the minimum is zero)
            assert float(loss.fn(s, t, T)) >= floor - 1e-6
            if name in ("kl", "mse_logits", "feature_l2", "feature_cosine"):
                assert floor == 0.0
            # finite gradients, also for saturated outputs
            for scale in (1.0, 30.0):
                s_big, t_big = draw(loss.on, seed, scale)
                g = grad_of(loss.fn, s_big, t_big, T)
                assert torch.isfinite(g).all() and g.abs().sum() > 0
            # teacher logits of -inf (zero-padded targets) keep values and gradients finite
            if loss.on == "logits" and name != "mse_logits":
                t_pad = t.clone()
                t_pad[:, -1] = float("-inf")
                assert torch.isfinite(loss.fn(s, t_pad, T))
                assert torch.isfinite(grad_of(loss.fn, s, t_pad, T)).all()
    if loss.on == "logits":
        _check_old_mask_and_t2_through_lwf(name)
    else:
        _check_feature_loss_through_lwf(name)


def _check_old_mask_and_t2_through_lwf(name: str) -> None:
    """Class-il, third task (classes 4, 5 new; 0-3 old): the distillation term gives the new
    outputs no gradient, and t2_scaling multiplies it by T^2 (1 for losses without T)."""
    terms = {}
    for t2 in (False, True):
        _, _, state, ctx = setup("lwf", "class-il", index=2, **{
            "strategy.distill_loss": name, "strategy.temperature": 3.0,
            "strategy.t2_scaling": t2})
        strategy = state.strategy
        with_teacher(strategy, ctx)
        batch = batch_of(ctx)
        with torch.no_grad():
            features, logits = ctx.model.forward_features(batch.x)
        logits = logits.clone().requires_grad_(True)
        term = strategy.distillation(ctx, batch, features, logits)
        term.backward()
        assert logits.grad is not None
        assert torch.all(logits.grad[:, 4:] == 0), "new outputs got a distillation gradient"
        assert logits.grad[:, :4].abs().sum() > 0
        terms[t2] = float(term.detach())
    factor = 9.0 if LOSSES[name].uses_temperature else 1.0
    assert terms[True] == pytest.approx(factor * terms[False], rel=1e-6)
    assert terms[False] > 0


def _check_feature_loss_through_lwf(name: str) -> None:
    """A feature loss distils the penultimate features: the logits get no gradient from it,
    and t2_scaling (a logits convention) changes nothing."""
    terms = {}
    for t2 in (False, True):
        _, _, state, ctx = setup("lwf", "class-il", index=2, **{
            "strategy.distill_loss": name, "strategy.t2_scaling": t2})
        strategy = state.strategy
        with_teacher(strategy, ctx)
        batch = batch_of(ctx)
        with torch.no_grad():
            features, logits = ctx.model.forward_features(batch.x)
        features = features.clone().requires_grad_(True)
        logits = logits.clone().requires_grad_(True)
        term = strategy.distillation(ctx, batch, features, logits)
        term.backward()
        assert logits.grad is None
        assert features.grad is not None and features.grad.abs().sum() > 0
        terms[t2] = float(term.detach())
    assert terms[True] == pytest.approx(terms[False]) and terms[False] > 0


@pytest.mark.parametrize("T", TEMPERATURES)
def test_kl_and_soft_ce_give_the_same_gradient_and_differ_by_the_teacher_entropy(T):
    for seed in range(4):
        s, t = draw("logits", seed)
        if seed % 2:
            t[:, 0] = float("-inf")    # zero-padded targets too
        assert torch.allclose(grad_of(kl, s, t, T), grad_of(soft_ce, s, t, T), atol=1e-6)
        assert float(kl(s, t, T)) == pytest.approx(
            float(soft_ce(s, t, T) - softmax_entropy(t, T)), abs=1e-5)


def test_kl_is_torch_kl_div_batchmean_as_avalanche_computes_it():
    # Avalanche 0.6.0, regularization.py l.96-98: kl_div(log_softmax(out/T), softmax(prev/T),
    # reduction="batchmean")
    for seed in range(3):
        s, t = draw("logits", seed)
        expected = F.kl_div(F.log_softmax(s / 2, 1), F.softmax(t / 2, 1), reduction="batchmean")
        assert float(kl(s, t, 2.0)) == pytest.approx(float(expected), abs=1e-6)


def test_soft_ce_uses_li_hoiem_targets():
    # Li & Hoiem 2016, eq. 3: y'_i = y_i^(1/T) / sum_j y_j^(1/T), y the recorded probabilities
    s, t = draw("logits", 0)
    T = 2.0
    y, y_hat = F.softmax(t, 1), F.softmax(s, 1)
    y_mod = y.pow(1 / T) / y.pow(1 / T).sum(1, keepdim=True)
    y_hat_mod = y_hat.pow(1 / T) / y_hat.pow(1 / T).sum(1, keepdim=True)
    expected = -(y_mod * y_hat_mod.log()).sum(1).mean()
    assert float(soft_ce(s, t, T)) == pytest.approx(float(expected), abs=1e-5)


def test_minimum_of_soft_ce_is_the_teacher_entropy_by_hand():
    _, t = draw("logits", 1)
    p = F.softmax(t / 2, 1)
    assert float(LOSSES["soft_ce"].minimum(t, 2.0)) == pytest.approx(
        float(-(p * p.log()).sum(1).mean()), abs=1e-6)
    r = torch.sigmoid(t / 2)
    by_hand = -(r * r.log() + (1 - r) * (1 - r).log()).sum(1).mean()
    assert float(LOSSES["bce"].minimum(t, 2.0)) == pytest.approx(float(by_hand), abs=1e-6)


def test_grouped_distillation_sums_or_averages_one_softmax_per_group():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    groups = [torch.tensor([0, 1]), torch.tensor([2, 3, 4])]
    per_group = [soft_ce(s[:, idx], t[:, idx], 2.0) for idx in groups]
    total = grouped_distillation(LOSSES["soft_ce"], s, t, groups, 2.0, "sum")
    mean = grouped_distillation(LOSSES["soft_ce"], s, t, groups, 2.0, "mean")
    assert float(total) == pytest.approx(float(sum(per_group)), abs=1e-6)
    assert float(mean) == pytest.approx(float(sum(per_group)) / 2, abs=1e-6)
    assert float(grouped_distillation(LOSSES["kl"], s, t, [], 2.0)) == 0.0
    with pytest.raises(ValueError, match="reduction"):
        grouped_distillation(LOSSES["kl"], s, t, groups, 2.0, "max")


def test_teacher_masks_give_zero_padded_targets():
    # van de Ven & Tolias 2019 (utils.py loss_fn_kd): the teacher's softmax over its old
    # units, zeros appended for the new ones, against the student's softmax over all of them
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    group = [torch.arange(6)]
    mask = [torch.tensor([True] * 4 + [False] * 2)]
    T = 2.0
    targets = torch.cat([F.softmax(t[:, :4] / T, 1), torch.zeros(4, 2)], dim=1)
    expected = -(targets * F.log_softmax(s / T, 1)).sum(1).mean()
    got = grouped_distillation(LOSSES["soft_ce"], s, t, group, T, teacher_masks=mask)
    assert float(got) == pytest.approx(float(expected), abs=1e-6)
    # the new outputs are pushed down: a positive gradient on their logits
    s_leaf = s.clone().requires_grad_(True)
    grouped_distillation(LOSSES["soft_ce"], s_leaf, t, group, T, teacher_masks=mask).backward()
    assert s_leaf.grad is not None and bool((s_leaf.grad[:, 4:] > 0).all())
