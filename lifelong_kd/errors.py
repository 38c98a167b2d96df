"""Errors that the command line turns into one clear message and exit code 2.

``UserError`` (a problem the user can fix), ``ConfigError`` (a bad setting) and ``DataError`` (a
dataset that is missing or malformed) are defined in ``config.py``, the bottom layer that imports
nothing of the package, so that configuration can raise them too; every other module imports
them from here.
"""

from __future__ import annotations

from .config import ConfigError, DataError, UserError

__all__ = ["ConfigError", "DataError", "UserError"]
