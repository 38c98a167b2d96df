"""What an executor is: anything that runs the specs of a plan and says how each ended
(:class:`Executor`, one :class:`Outcome` per spec), and the one that runs them one after
another in this process (:class:`SerialExecutor`). ``lifelong_kd/executors/`` has those
that run them in parallel (local processes, Ray)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import UserError
from ..results import WriteError
from .data import DataProvider
from .execution import RunOptions, execute
from .planning import RunSpec
from .signals import StopFlag

#: A log line's destination (``print`` to stderr, say), or None for no log.
Log = Callable[[str], None] | None


@dataclass(frozen=True)
class Outcome:
    """How one spec of a plan ended: its result (any status), or the error that stopped it
    (then ``result`` is None)."""

    spec: RunSpec
    result: dict[str, Any] | None = None
    error: str | None = None

    def failure(self) -> dict[str, Any] | None:
        """``{"strategy", "seed", "error"}`` for the report when the run did not finish."""
        spec = self.spec
        if self.error is not None:
            return {"strategy": spec.variant, "seed": spec.config.seed, "error": self.error}
        assert self.result is not None
        if self.result["status"] != "finished":
            return {"strategy": spec.variant, "seed": spec.config.seed,
                    "error": f"{self.result['status']}: {self.result.get('message', '')}"}
        return None


class Executor(Protocol):
    """Runs the specs of a plan (each with :func:`execute`) and says how each ended."""

    def run(self, specs: Sequence[RunSpec], provider: DataProvider, options: RunOptions, *,
            stop: StopFlag | None = None, log: Log = None) -> list[Outcome]: ...


class SerialExecutor:
    """One run after another in this process, in the order of the plan.

    A run that fails is recorded (its error in one line) and the others go on; a failure to
    write (a full disk, a read-only folder) stops them all, as a :class:`WriteError`. Once a
    stop is requested, the runs not started are recorded as not run.
    """

    def run(self, specs: Sequence[RunSpec], provider: DataProvider, options: RunOptions, *,
            stop: StopFlag | None = None, log: Log = None) -> list[Outcome]:
        outcomes = []
        for n, spec in enumerate(specs, 1):
            if stop is not None and stop.requested:
                outcomes.append(Outcome(spec, error="not run (interrupted)"))
                continue
            if log:
                log(f"[{n}/{len(specs)}] {spec.identity.title} -> {spec.folder}")
            try:
                outcomes.append(Outcome(spec, execute(spec, provider, options, stop)))
            except WriteError:
                raise  # a full disk or a read-only folder stops every run: one line
            except UserError as exc:
                outcomes.append(Outcome(spec, error=str(exc)))
            except Exception as exc:  # noqa: BLE001 - one failing run must not lose the others
                outcomes.append(Outcome(spec, error=f"{type(exc).__name__}: {exc}"))
            if log and outcomes[-1].error:
                log(f"  failed: {outcomes[-1].error}")
        return outcomes
