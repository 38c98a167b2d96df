"""The data of runs: each dataset loaded once per process (:class:`DataProvider`), and the
data a run was made on checked against the data loaded now (:func:`check_same_data`: the
data fingerprint is part of a run's identity)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import UserError


@dataclass
class DataProvider:
    """Loads each dataset once per process (``compare`` runs share it)."""

    data_dir: Path
    offline: bool = False
    progress: bool = True
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    def dataset(self, config: RunConfig) -> Any:
        """The dataset of ``config`` (``data.dataset`` read from ``data.path``), loaded on the
        first call and the same object on every other."""
        from ..data.sources import load_dataset

        key = (config.data.dataset, config.data.path)
        if key not in self._cache:
            self._cache[key] = load_dataset(config.data.dataset, self.data_dir, self.offline,
                                            config.data.path, progress=self.progress)
        return self._cache[key]


def _listed(items: list[str], limit: int = 4) -> str:
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def _data_where(info: Any) -> str:
    path = info.get("path") if isinstance(info, dict) else None
    return str(path) if path else "(no folder recorded)"


def check_same_data(what: str, recorded: Any, ds: Any, hint: str) -> None:
    """Refuse when the data a run was made on (``recorded``: its result's or checkpoint's
    ``data``) is not the data ``ds`` loaded now: the fingerprint is part of a run's identity."""
    fingerprint = recorded.get("fingerprint") if isinstance(recorded, dict) else None
    if fingerprint == ds.fingerprint:
        return
    now = f"{ds.fingerprint[:12]} from {ds.path or '(built in)'}"
    if not isinstance(fingerprint, str) or not fingerprint:
        raise UserError(f"{what} records no data fingerprint, so it cannot be checked against "
                        f"the data now (fingerprint {now}); {hint}")
    raise UserError(f"{what} was made on other data: fingerprint {fingerprint[:12]} from "
                    f"{_data_where(recorded)}, but the data now has fingerprint {now}; {hint}")
