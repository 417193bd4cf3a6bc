"""Progress of a run on stderr: one line per finished stage, one per item of a long stage.

Stages (prepare, profile, sensitivity table, search steps, recovery, verify, write) report here;
the command line turns reporting on (:func:`configure`) unless ``--quiet`` or a ``--json``
output asks for silence; the Python API leaves it off.

When stderr is not a terminal (CI, nohup, a log file) every line is plain text::

    onnxprune: [   12.3 s] profile group 3/25: 7 conv_7, ~31 s left
    onnxprune: [   40.1 s] profile done in 39 s: 25 groups, 1204 new layer measurements, ...

On a terminal, items move a transient rich progress bar and finished stages print one line.

Invariant: a stage prints only when it *succeeds* (or advances), so a refusal of bad input found
while loading and validating stays the only line on stderr.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

_lock = threading.RLock()
_state: dict[str, Any] = {"on": False, "start": time.perf_counter(), "bar": None}


def configure(enabled: bool) -> None:
    """Turn reporting on or off; the run's clock starts now."""
    with _lock:
        _state.update(on=enabled, start=time.perf_counter())


def enabled() -> bool:
    return bool(_state["on"])


def _tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def line(text: str) -> None:
    """One progress line (when reporting is on), stamped with the run's elapsed time."""
    if not enabled():
        return
    with _lock:
        stamp = f"[{time.perf_counter() - _state['start']:7.1f} s]"
        bar = _state["bar"]
        if bar is not None:
            bar.console.print(f"[dim]{stamp}[/dim] {text}", highlight=False)
        else:
            print(f"onnxprune: {stamp} {text}", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def short(name: str, width: int = 40) -> str:
    """``name`` cut to its last ``width`` characters (node names grow at the front)."""
    return name if len(name) <= width else "..." + name[-(width - 3):]


class Stage:
    """A running stage; :meth:`advance` once per finished item (thread-safe)."""

    def __init__(self, name: str, total: int | None, unit: str, quiet: bool = False):
        self.name, self.total, self.unit, self.quiet = name, total, unit, quiet
        self.done = 0
        self.start = time.perf_counter()
        self.summary = ""
        self._task = None

    def advance(self, label: str = "") -> None:
        """One item finished: a plain line with the time left, or one step of the bar."""
        if not enabled() or self.quiet:
            return
        with _lock:
            self.done += 1
            bar = _state["bar"]
            if bar is not None and self._task is not None:
                bar.update(self._task, completed=self.done, description=f"{self.name} {label}"[:60])
                return
            count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
            left = ""
            if self.total and self.done < self.total:
                rate = (time.perf_counter() - self.start) / self.done
                left = f", ~{_duration(rate * (self.total - self.done))} left"
            line(f"{self.name} {self.unit} {count}{(': ' + label) if label else ''}{left}")

    def note(self, text: str) -> None:
        """A line about this stage (a search step, a decision)."""
        if not self.quiet:
            line(f"{self.name}: {text}")


@contextlib.contextmanager
def stage(name: str, total: int | None = None, unit: str = "", quiet: bool = False) -> Iterator[Stage]:
    """Run a stage: on success one line ``NAME done in S s[: summary]`` (set ``Stage.summary``);
    with a ``total`` of items, a progress bar on a terminal. ``quiet``: report nothing."""
    current = Stage(name, total, unit, quiet)
    own_bar = False
    if enabled() and not quiet and total and _tty() and _state["bar"] is None:
        from rich.console import Console
        from rich.progress import Progress

        with _lock:
            bar = Progress(console=Console(stderr=True), transient=True)
            bar.start()
            _state["bar"] = bar
            current._task = bar.add_task(name, total=total)
            own_bar = True
    try:
        yield current
    finally:
        if own_bar:
            with _lock:
                _state["bar"].stop()
                _state["bar"] = None
    if quiet:
        return
    detail = f": {current.summary}" if current.summary else ""
    line(f"{name} done in {_duration(time.perf_counter() - current.start)}{detail}")


def timed(name: str) -> Callable:
    """Decorator: the function is a stage named ``name`` (one line when it returns)."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with stage(name):
                return fn(*args, **kwargs)
        return inner

    return wrap
