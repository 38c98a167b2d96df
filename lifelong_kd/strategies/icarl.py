"""iCaRL (Rebuffi et al. 2017): herding memory, sigmoid distillation, nearest-mean prediction.

(Being written for issue 14.)
"""

from __future__ import annotations

from .base import Strategy


class ICaRL(Strategy):
    """iCaRL (Rebuffi et al. 2017). Being written."""

    MEMORY = "required"
