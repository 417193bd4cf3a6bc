"""JSON caches that lose nothing: read, merge under a lock, replace atomically.

Every measurement cache (layer profiles, sensitivity tables) is one JSON object ``{key: value}``
on disk. Writers call :func:`update` with the entries they measured since their last write: under
an exclusive lock (``fcntl.flock`` on ``PATH.lock``) the file is read again, the new entries are
merged into what is there (``merge(old, new)`` for a key both hold) and the result replaces the
file atomically (a temporary file in the same directory, then ``os.replace``).

Invariants: a reader never sees a partial file (a killed writer leaves the previous version, at
worst a stray temporary file); two processes sharing a file keep both sets of entries; a file
that is not a JSON object (truncated by a full disk, written by something else) reads as empty
and is replaced by the next write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any


def cache_dir() -> str:
    """Where measurements and engine caches live: ``$ONNXPRUNE_CACHE`` or ~/.cache/onnxprune."""
    return os.environ.get("ONNXPRUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "onnxprune")


def read(path: str | None) -> dict[str, Any]:
    """The cache at ``path`` (``{}`` when it is missing, unreadable or not a JSON object)."""
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: the mode a new file gets


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary file beside ``path`` to write, renamed over ``path`` (with the mode a new
    file gets, not ``mkstemp``'s 0600) when the block succeeds, removed otherwise; the
    directory must exist. The one atomic write of the project (models, reports, caches)."""
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".onnxprune-", suffix=os.path.splitext(path)[1], dir=parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_files(path: str) -> Iterator[str]:
    """:func:`atomic_path` for a file written with companions beside it (a model's external
    data file): yields ``path``'s name inside a temporary folder beside ``path``; when the block
    succeeds every file written there is renamed beside ``path`` (``path`` itself last), with
    the mode a new file gets; the folder is removed either way, so a failure leaves nothing."""
    parent = os.path.dirname(os.path.abspath(path))
    stage = tempfile.mkdtemp(prefix=".onnxprune-", dir=parent)
    name = os.path.basename(path)
    try:
        yield os.path.join(stage, name)
        for f in [*sorted(set(os.listdir(stage)) - {name}), name]:
            os.chmod(os.path.join(stage, f), 0o666 & ~_UMASK)
            os.replace(os.path.join(stage, f), os.path.join(parent, f))
    finally:
        for f in os.listdir(stage):
            os.unlink(os.path.join(stage, f))
        os.rmdir(stage)


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8) atomically (:func:`atomic_path`), creating its
    directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold the exclusive lock of cache ``path`` (released when the process dies)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def keep_new(old: Any, new: Any) -> Any:
    """The default merge: the entry just measured wins."""
    return new


def update(path: str, entries: dict[str, Any],
           merge: Callable[[Any, Any], Any] = keep_new) -> dict[str, Any]:
    """Merge ``entries`` into the cache at ``path`` under its lock; returns the merged cache
    (which includes what other processes wrote since this one last read it)."""
    with locked(path):
        data = read(path)
        for key, value in entries.items():
            data[key] = merge(data[key], value) if key in data else value
        atomic_write(path, json.dumps(data))
    return data
