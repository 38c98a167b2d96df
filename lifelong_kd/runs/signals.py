"""Stop signals: the first SIGINT/SIGTERM asks for a clean stop after the current step (a
:class:`StopFlag`, which the engine polls between steps); a second SIGINT exits at once."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class StopFlag:
    """Set by the first SIGINT/SIGTERM; the engine polls it between steps."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def __call__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Turn the first SIGINT/SIGTERM into a clean stop; a second SIGINT exits at once."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.requested and signum == signal.SIGINT:
            sys.stderr.write("\nsecond interrupt: exiting at once\n")
            os._exit(130)
        flag.requested = True
        flag.signal_name = signal.Signals(signum).name
        sys.stderr.write(f"\n{flag.signal_name}: stopping after the current step "
                         "(Ctrl-C again to exit at once)\n")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
