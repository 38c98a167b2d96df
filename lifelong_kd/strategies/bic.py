"""BiC (Wu et al. 2019): distillation with exemplars and a bias-correction stage.

(Being written for issue 14.)
"""

from __future__ import annotations

from .lwf import LwF


class BiC(LwF):
    """BiC (Wu et al. 2019). Being written."""

    MEMORY = "required"
