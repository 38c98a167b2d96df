"""Errors that the command line turns into one clear message and exit code 2.

``UserError`` (a problem the user can fix), ``ConfigError`` (a bad setting) and ``DataError`` (a
dataset that is missing or malformed). This module imports nothing (of the package or beyond),
so that every module may raise them, ``config.py`` included (an import-linter contract in
pyproject.toml keeps it so).
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "UserError"]


class UserError(Exception):
    """A problem the user can fix: a bad setting, a missing file, an unknown name.

    The command line prints ``error: <message>`` and exits with code 2, without a traceback
    (``--debug`` shows it).
    """


class ConfigError(UserError):
    """An unknown key, a value of the wrong type or out of range, an unknown name."""


class DataError(UserError):
    """A dataset that is missing, truncated, malformed or cannot be downloaded."""
