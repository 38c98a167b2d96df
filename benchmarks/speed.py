"""Speed benchmark: `lifelong-kd run` against a plain PyTorch loop doing the same work.

Reference configuration (issue 2): Permuted-MNIST, 3 tasks, 1 epoch per task, MLP 2 x 400,
SGD lr 0.01 momentum 0.9, batch 128, LwF alpha 1, T 2, no T^2 factor; evaluation on every
task after every task (and before the first). Both sides run as whole processes (Python
start-up, imports, reading MNIST, training, evaluation); the script prints both wall times
and their ratio. Run from the repository root:

    LIFELONG_KD_DATA=../shared/datasets python benchmarks/speed.py [--repeats 3]

``python benchmarks/speed.py plain-mnist`` runs the plain loop alone.
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


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="compare", choices=["compare", "plain-mnist"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("LIFELONG_KD_DATA", "../shared/datasets")))
    args = parser.parse_args()
    if args.mode == "plain-mnist":
        plain_permuted_mnist(args.data_dir)
        return 0
    env = dict(os.environ, LIFELONG_KD_DATA=str(args.data_dir.resolve()))
    plain_cmd = [sys.executable, __file__, "plain-mnist", "--data-dir", str(args.data_dir)]
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            ours_cmd = [
                sys.executable, "-m", "lifelong_kd", "run", "permuted-mnist", "--strategy", "lwf",
                "--set", "stream.n_tasks=3", "--set", "strategy.t2_scaling=false", "--quiet",
                "--offline", "--out", str(Path(tmp) / f"run{r}"),
            ]
            plain.append(_time(plain_cmd, env))
            ours.append(_time(ours_cmd, env))
    p, o = statistics.median(plain), statistics.median(ours)
    print("Permuted-MNIST, 3 tasks, 1 epoch, MLP 2x400, SGD 0.01 m0.9, batch 128, LwF a=1 T=2")
    print(f"plain PyTorch loop, whole process: median {p:.2f} s  ({', '.join(f'{v:.2f}' for v in plain)})")
    print(f"lifelong-kd run,    whole process: median {o:.2f} s  ({', '.join(f'{v:.2f}' for v in ours)})")
    print(f"ratio lifelong-kd / plain: {o / p:.2f}  (target <= 1.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
