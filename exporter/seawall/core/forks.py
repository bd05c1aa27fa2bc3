"""Bring background work back in a forked child: threads do not survive `os.fork()`.

gunicorn with `--preload` (and any `multiprocessing` fork) imports the app once in the parent and
forks the workers: objects made at import come along, their daemon threads do not, and a lock
another thread held at the fork stays held for ever in the child. An owner registered here names the
lock its background work holds (`fork_lock`): a fork first waits for that work to finish (bounded),
so the child never inherits a half-done sync; the child gets a new lock and the owner's
`after_fork()`, which restarts its thread (with what the owner's `before_fork()` read in the parent
at the fork, so a child can tell what it inherited from what it did). The hooks hold the owner
weakly, so registering keeps nothing alive.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, Protocol

__all__ = ["FORK_WAIT_SECONDS", "ForkAware", "restart_in_children"]

log = logging.getLogger("seawall")

# How long a fork waits for an owner's background work in progress (a Redis round trip, a
# multiprocess write); past it the fork goes on and the child gets a new lock regardless.
FORK_WAIT_SECONDS = 5.0


class ForkAware(Protocol):
    fork_lock: Any  # a threading.Lock held by the owner's background work

    def before_fork(self) -> Any:
        """Called in the parent with `fork_lock` held: what the child must know of the moment."""

    def after_fork(self, at_fork: Any) -> None:
        """Called in the child with a new `fork_lock` and what `before_fork` returned: restart."""


def restart_in_children(owner: ForkAware) -> None:
    """At every later fork: wait for `owner`'s background work, take its `before_fork()` in the
    parent and hand it to its `after_fork()` in the child.

    A failing hook is logged and the child goes on (the owner then works as it would without
    its thread); nothing may escape into the fork of a host's worker.
    """
    if not hasattr(os, "register_at_fork"):  # pragma: no cover - no fork on this platform
        return
    ref = weakref.ref(owner)
    held: list[Any] = []
    carried: list[Any] = []

    def before() -> None:
        target = ref()
        if target is None:
            return
        lock = target.fork_lock
        if lock.acquire(timeout=FORK_WAIT_SECONDS):
            held.append(lock)
        else:
            log.warning("seawall: %s still busy at fork; the child starts it afresh", type(target).__name__)
        try:
            carried.append(target.before_fork())
        except Exception:
            log.exception("seawall: %s could not prepare for a fork", type(target).__name__)

    def in_parent() -> None:
        carried.clear()
        while held:
            held.pop().release()

    def in_child() -> None:
        held.clear()
        at_fork = carried.pop() if carried else None
        carried.clear()
        target = ref()
        if target is None:
            return
        try:
            target.fork_lock = threading.Lock()
            target.after_fork(at_fork)
        except Exception:
            log.exception("seawall: %s could not restart after fork", type(target).__name__)

    os.register_at_fork(before=before, after_in_parent=in_parent, after_in_child=in_child)
