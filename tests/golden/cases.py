"""The configurations whose accuracy matrices pin the engine's behaviour (issue 13).

Every built-in strategy preset in every scenario it supports, on Split-Digits (3 tasks of 2
digits, 2 epochs, MLP 1x32), plus the stream kinds (permuted, rotated), options that take other
code paths (distillation losses, online EWC, joint ``mode = final``, head masking, augmentation
with a ConvNet on MNIST, a clean teacher input) and one Avalanche strategy. ``make_golden.py``
records their matrices with the code of one commit; ``tests/test_golden.py`` re-runs them
and demands the same matrices bit for bit. A built-in preset that no listed case runs gets
one generated from the registry (:func:`registry_cases`).
"""

from __future__ import annotations

DIGITS = ["--set", "stream.n_tasks=3", "--set", "stream.classes_per_task=2", "--set",
          "train.epochs=2", "--set", "model.hidden=[32]"]
MNIST_CONV = ["--set", "data.train_subset=300", "--set", "data.test_subset=200", "--set",
              "stream.n_tasks=2", "--set", "model.name=convnet", "--set", "model.channels=[4,8]",
              "--set", "train.iterations=6", "--set", "train.batch_size=32", "--set",
              "train.augment=true", "--set", "stream.scenario=class-il"]

MEMORY = ["--set", "memory.size=40", "--set", "memory.batch_size=16"]

_SCENARIOS = {
    "naive": ("task-il", "class-il", "domain-il"),
    "lwf": ("task-il", "class-il", "domain-il"),
    "lwf-vdv2019": ("task-il", "class-il", "domain-il"),
    "lwf-vdv2022": ("task-il", "class-il", "domain-il"),
    "lwf-mammoth": ("class-il",),
    "lwf-avalanche": ("task-il", "class-il", "domain-il"),
    "lwf-facil": ("class-il",),
    "joint": ("task-il", "class-il", "domain-il"),
    "ewc": ("task-il", "class-il", "domain-il"),
}


def cases() -> dict[str, list[str]]:
    """Case name -> the `lifelong-kd run` arguments after `run` (without --out)."""
    out: dict[str, list[str]] = {}
    for strategy, scenarios in _SCENARIOS.items():
        for scenario in scenarios:
            out[f"{strategy}/{scenario}"] = ["split-digits", "--strategy", strategy,
                                             "--set", f"stream.scenario={scenario}", *DIGITS]
    for strategy in ("naive", "lwf", "joint", "ewc"):
        out[f"permuted/{strategy}"] = ["permuted-digits", "--strategy", strategy,
                                       "--set", "stream.n_tasks=3", "--set", "train.epochs=2",
                                       "--set", "train.lr=0.01", "--set", "model.hidden=[32]"]
    out["rotated/lwf"] = ["permuted-digits", "--strategy", "lwf", "--set", "stream.kind=rotated",
                          "--set", "stream.n_tasks=3", "--set", "train.epochs=2",
                          "--set", "model.hidden=[32]"]
    for loss in ("kl", "bce", "mse_logits", "feature_l2", "feature_cosine"):
        out[f"loss/{loss}"] = ["split-digits", "--strategy", "lwf", "--set",
                               f"strategy.distill_loss={loss}", *DIGITS]
    out["ewc/online-empirical"] = ["split-digits", "--strategy", "ewc", "--set",
                                   "strategy.ewc_online=true", "--set", "strategy.ewc_gamma=0.9",
                                   "--set", "strategy.ewc_fisher=empirical", *DIGITS]
    out["joint/final"] = ["split-digits", "--strategy", "joint", "--set", "strategy.mode=final",
                          *DIGITS]
    out["masked/lwf"] = ["split-digits", "--strategy", "lwf", "--set", "model.head=masked",
                         *DIGITS]
    out["adam/keep-optimizer/lwf-vdv2019"] = [
        "split-digits", "--strategy", "lwf-vdv2019", "--set", "train.optimizer=adam",
        "--set", "train.lr=0.001", "--set", "train.reset_optimizer=false", *DIGITS]
    out["conv-augment/lwf"] = ["permuted-mnist", "--strategy", "lwf", "--set",
                               "stream.kind=split", "--set", "stream.classes_per_task=2",
                               *MNIST_CONV]
    out["conv-augment/lwf-mammoth"] = ["permuted-mnist", "--strategy", "lwf-mammoth", "--set",
                                       "stream.kind=split", "--set",
                                       "stream.classes_per_task=2", *MNIST_CONV]
    out["avalanche/Naive"] = ["split-digits", "--strategy", "avalanche:Naive", *DIGITS]
    # the strategies added after the first recording (issues 14-15), recorded with be584e5,
    # the code before issue 17's work on the training loop
    for strategy in ("er", "er-avalanche", "der", "derpp", "der-avalanche", "derpp-avalanche",
                     "icarl", "icarl-random", "bic", "lwf-facil-exemplars"):
        out[f"memory/{strategy}"] = ["split-digits", "--strategy", strategy, "--set",
                                     "stream.scenario=class-il", *DIGITS, *MEMORY]
    for strategy in ("kd", "compress", "compress-lwf", "compress-derpp"):
        out[f"teacher/{strategy}"] = ["split-digits", "--strategy", strategy, "--set",
                                      "stream.scenario=class-il", *DIGITS, "--set",
                                      "teacher.hidden=[64]", *MEMORY]
    out.update(registry_cases(out))
    return out


def registry_cases(listed: dict[str, list[str]]) -> dict[str, list[str]]:
    """A case for every built-in preset that no case above runs, generated from the registry
    (its class-il run if it supports class-il, else its first scenario; with a memory when its
    class keeps one, a teacher's width when it trains one), so that a new preset is pinned
    without a line here once ``make_golden.py`` has recorded it."""
    from lifelong_kd.strategies.presets import BUILT_IN

    covered = {argv[argv.index("--strategy") + 1] for argv in listed.values()}
    out: dict[str, list[str]] = {}
    for preset in BUILT_IN:
        if preset.name in covered:
            continue
        scenario = "class-il" if "class-il" in preset.scenarios else preset.scenarios[0]
        argv = ["split-digits", "--strategy", preset.name, "--set",
                f"stream.scenario={scenario}", *DIGITS]
        if preset.cls.MEMORY != "none":
            argv += MEMORY
        if preset.cls.TEACHER:
            argv += ["--set", "teacher.hidden=[64]"]
        out[f"preset/{preset.name}"] = argv
    return out
