"""lifelong-kd: continual-learning benchmarks with knowledge distillation."""

__version__ = "0.1.0"
