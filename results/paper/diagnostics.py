"""Diagnostic runs for results/paper/README.md: a paper preset with protocol details that the
configuration cannot express yet, patched in from outside the library.

    OMP_NUM_THREADS=1 /work/venv/bin/python results/paper/diagnostics.py PRESET \
        [--raw-inputs] [--xavier] [--strategies ...] [--seeds ...] --out DIR

--raw-inputs  feed x / 255 without the (x - mean) / std standardisation (Mammoth's and van de
              Ven's ToTensor() only): the dataset's mean and std are replaced by 0 and 1.
--xavier      Mammoth's backbone init (backbone/__init__.py `xavier`): every Linear weight
              U(-a, a), a = sqrt(3) * sqrt(2 / (fan_in + fan_out)), bias 0.

These are not protocol presets: they answer "does this missing detail explain the gap?".
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    parser.add_argument("--raw-inputs", action="store_true")
    parser.add_argument("--xavier", action="store_true")
    parser.add_argument("--strategies", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch

    from lifelong_kd import engine
    from lifelong_kd.data.sources import default_data_dir
    from lifelong_kd.runs import DataProvider, compare

    class Provider(DataProvider):
        def get(self, config):  # noqa: ANN001, ANN201
            ds = super().get(config)
            if args.raw_inputs:
                zeros = tuple(0.0 for _ in ds.mean)
                ones = tuple(1.0 for _ in ds.std)
                ds = dataclasses.replace(ds, mean=zeros, std=ones)
            return ds

    if args.xavier:
        original = engine.build_model

        def build_model(config, input_shape, n_outputs):  # noqa: ANN001, ANN202
            model = original(config, input_shape, n_outputs)
            for m in model.modules():
                if isinstance(m, torch.nn.Linear):
                    fan_out, fan_in = m.weight.shape
                    a = math.sqrt(3.0) * math.sqrt(2.0 / (fan_in + fan_out))
                    with torch.no_grad():
                        m.weight.uniform_(-a, a)
                        if m.bias is not None:
                            m.bias.zero_()
            return model

        engine.build_model = build_model

    outcome = compare(args.preset, args.strategies, args.seeds, {},
                      Provider(default_data_dir(), offline=True), args.out, progress=False,
                      resume=True, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
