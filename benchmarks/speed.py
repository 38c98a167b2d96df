"""Speed benchmark: `lifelong-kd run` against a plain PyTorch loop doing the same work.

Both sides run as whole processes (Python start-up, imports, reading the data, training,
evaluation on every task after every task and before the first); the script prints both
wall times and their ratio. Run from the repository root:

    LIFELONG_KD_DATA=../shared/datasets python benchmarks/speed.py [mnist|cifar|all] [--repeats 3]

- ``mnist`` (issue 2): Permuted-MNIST, 3 tasks, 1 epoch per task, MLP 2 x 400, SGD lr 0.01
  momentum 0.9, batch 128, LwF alpha 1, T 2, no T^2 factor.
- ``cifar`` (issue 3): Split-CIFAR-10 on the CIFAR-10 (JPEG copy) image folder, 5 tasks of 2
  classes, task-il (a head per task), 1 epoch per task, the ConvNet (32-64 conv, 256 fc),
  crop+flip augmentation, SGD lr 0.01 momentum 0.9, batch 64, LwF alpha 1, T 2. The plain
  loop is the idiomatic one: ``torchvision.datasets.ImageFolder`` with transforms and a
  ``DataLoader`` (``--workers``, default 2), which decodes JPEGs every epoch;
  lifelong-kd decodes the folder once into a cache (the first run pays for that; this script
  warms the cache before timing and says so).

``python benchmarks/speed.py plain-mnist`` / ``plain-cifar`` run a plain loop alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def plain_permuted_mnist(data_dir: Path, n_tasks: int = 3, seed: int = 0) -> None:
    """The plain loop: what a researcher would write by hand, with the teacher run per batch."""
    import copy
    import gzip

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    def idx(name: str) -> np.ndarray:
        raw = gzip.decompress((data_dir / "MNIST" / "raw" / f"{name}.gz").read_bytes())
        ndim = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)

    torch.manual_seed(seed)
    xtr = torch.from_numpy(idx("train-images-idx3-ubyte").reshape(-1, 784).copy())
    ytr = torch.from_numpy(idx("train-labels-idx1-ubyte").astype(np.int64))
    xte = torch.from_numpy(idx("t10k-images-idx3-ubyte").reshape(-1, 784).copy())
    yte = torch.from_numpy(idx("t10k-labels-idx1-ubyte").astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    perms = [torch.arange(784)] + [torch.randperm(784, generator=g) for _ in range(n_tasks - 1)]

    def prep(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - 0.1307) / 0.3081

    model = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                          nn.Linear(400, 10))
    teacher = None

    def evaluate() -> list[float]:
        model.eval()
        with torch.no_grad():
            row = [(model(prep(xte[:, p])).argmax(1) == yte).float().mean().item() for p in perms]
        model.train()
        return row

    rows = [evaluate()]
    for p in perms:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x_task = xtr[:, p]
        order = torch.randperm(len(ytr), generator=g)
        for s in range(0, len(ytr), 128):
            i = order[s:s + 128]
            x, y = prep(x_task[i]), ytr[i]
            out = model(x)
            loss = F.cross_entropy(out, y)
            if teacher is not None:
                with torch.no_grad():
                    soft = F.softmax(teacher(x) / 2.0, dim=1)
                loss = loss + F.kl_div(F.log_softmax(out / 2.0, dim=1), soft,
                                       reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
        teacher = copy.deepcopy(model).eval()
        rows.append(evaluate())
    print("final average accuracy", sum(rows[-1]) / len(rows[-1]))


def plain_split_cifar(folder: Path, workers: int = 2, seed: int = 0) -> None:
    """The idiomatic plain loop for Split-CIFAR-10 task-il with LwF (teacher run per batch)."""
    import copy

    import torch
    import torch.nn.functional as F
    import torchvision.transforms as T
    from torch import nn
    from torch.utils.data import DataLoader, Subset
    from torchvision.datasets import ImageFolder

    torch.manual_seed(seed)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]
    norm = T.Normalize((0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606))
    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    test_tf = T.Compose([T.ToTensor(), norm])
    train = ImageFolder(str(folder / "train"), transform=train_tf)
    test = ImageFolder(str(folder / "test"), transform=test_tf)
    order = [train.class_to_idx[c] for c in classes]  # official label order
    remap = torch.tensor([order.index(i) for i in range(10)])
    train_y, test_y = remap[torch.tensor(train.targets)], remap[torch.tensor(test.targets)]
    tasks = [(2 * t, 2 * t + 1) for t in range(5)]

    def loader(ds, y, task, shuffle):  # noqa: ANN001, ANN202
        idx = torch.nonzero((y == task[0]) | (y == task[1])).flatten().tolist()
        return DataLoader(Subset(ds, idx), batch_size=64 if shuffle else 500, shuffle=shuffle,
                          num_workers=workers, persistent_workers=False)

    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10),
    )
    teacher = None

    def evaluate() -> list[float]:
        model.eval()
        row = []
        with torch.no_grad():
            for task in tasks:
                correct = total = 0
                for x, y in loader(test, test_y, task, False):
                    y = remap[y]
                    pred = model(x)[:, list(task)].argmax(1) + task[0]
                    correct += int((pred == y).sum())
                    total += len(y)
                row.append(correct / total)
        model.train()
        return row

    rows = [evaluate()]
    for t, task in enumerate(tasks):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for x, y in loader(train, train_y, task, True):
            y = remap[y] - task[0]
            out = model(x)
            loss = F.cross_entropy(out[:, list(task)], y)
            if teacher is not None:
                with torch.no_grad():
                    old = teacher(x)
                for prev in tasks[:t]:
                    p = list(prev)
                    loss = loss + F.kl_div(F.log_softmax(out[:, p] / 2.0, dim=1),
                                           F.softmax(old[:, p] / 2.0, dim=1), reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
        teacher = copy.deepcopy(model).eval()
        rows.append(evaluate())
    print("final average accuracy", sum(rows[-1]) / len(rows[-1]))


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _series(name: str, plain_cmd: list[str], ours_cmd, repeats: int,  # noqa: ANN001
            env: dict[str, str]) -> None:
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            plain.append(_time(plain_cmd, env))
            ours.append(_time(ours_cmd(Path(tmp) / f"run{r}"), env))
    p, o = statistics.median(plain), statistics.median(ours)
    print(name)
    print(f"  plain PyTorch loop, whole process: median {p:.2f} s  "
          f"({', '.join(f'{v:.2f}' for v in plain)})")
    print(f"  lifelong-kd run,    whole process: median {o:.2f} s  "
          f"({', '.join(f'{v:.2f}' for v in ours)})")
    print(f"  ratio lifelong-kd / plain: {o / p:.2f}  (target <= 1.3)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="all",
                        choices=["all", "mnist", "cifar", "plain-mnist", "plain-cifar"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (plain cifar)")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("LIFELONG_KD_DATA", "../shared/datasets")))
    args = parser.parse_args()
    if args.mode == "plain-mnist":
        plain_permuted_mnist(args.data_dir)
        return 0
    if args.mode == "plain-cifar":
        plain_split_cifar(args.data_dir / "cifar10-jpeg", args.workers)
        return 0
    env = dict(os.environ, LIFELONG_KD_DATA=str(args.data_dir.resolve()))
    me = [sys.executable, __file__]
    # `lwf` with the plain loop's exact loss: KL (the preset's soft CE has the same gradient),
    # no head warm-up
    ours = [sys.executable, "-m", "lifelong_kd", "run", "--strategy", "lwf", "--quiet", "--offline",
            "--set", "strategy.distill_loss=kl", "--set", "strategy.warmup_epochs=0"]
    if args.mode in ("all", "mnist"):
        _series(
            "Permuted-MNIST, 3 tasks, 1 epoch, MLP 2x400, SGD 0.01 m0.9, batch 128, LwF a=1 T=2",
            [*me, "plain-mnist", "--data-dir", str(args.data_dir)],
            lambda out: [*ours, "permuted-mnist", "--set", "stream.n_tasks=3",
                         "--set", "strategy.t2_scaling=false", "--out", str(out)],
            args.repeats, env,
        )
    if args.mode in ("all", "cifar"):
        cifar = [*ours, "split-cifar10-jpeg", "--set", "train.epochs=1", "--set",
                 "strategy.alpha=1", "--set", "strategy.temperature=2"]
        with tempfile.TemporaryDirectory() as tmp:  # decode the JPEG folder once into the cache
            subprocess.run([*cifar, "--set", "train.iterations=1", "--out", tmp + "/warm"],
                           env=env, check=True)
        _series(
            "Split-CIFAR-10 (JPEG copy), 5 tasks, task-il, 1 epoch, ConvNet, crop+flip, SGD 0.01 "
            f"m0.9, batch 64, LwF a=1 T=2 (plain: ImageFolder + DataLoader, {args.workers} workers;"
            " ours: image-folder cache warm)",
            [*me, "plain-cifar", "--data-dir", str(args.data_dir), "--workers", str(args.workers)],
            lambda out: [*cifar, "--out", str(out)],
            args.repeats, env,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
