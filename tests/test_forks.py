"""`seawall.core.forks`: what an owner's background work becomes in a forked child."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import weakref

import pytest

from seawall.core import forks

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


class Owner:
    def __init__(self, fail: bool = False) -> None:
        self.fork_lock = threading.Lock()
        self.fail = fail
        self.restarted = 0
        self.forks = 0
        self.carried: object = None
        forks.restart_in_children(self)

    def before_fork(self) -> int:
        assert self.fork_lock.locked()  # the background work is not running
        self.forks += 1
        return self.forks

    def after_fork(self, at_fork: object) -> None:
        self.restarted += 1
        self.carried = at_fork
        if self.fail:
            raise RuntimeError("cannot restart")


def in_child(check: object) -> int:
    """Fork; the child exits 0 when `check()` holds, 1 when not, 2 when it raised; the exit code."""
    pid = os.fork()
    if pid == 0:
        try:
            code = 0 if check() else 1  # type: ignore[operator]
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_child_gets_a_new_lock_and_its_restart() -> None:
    owner = Owner()
    before = owner.fork_lock
    assert (
        in_child(lambda: owner.restarted == 1 and owner.fork_lock is not before and owner.carried == 1) == 0
    )
    assert in_child(lambda: owner.carried == 2) == 0  # each fork carries its own reading
    assert owner.restarted == 0
    assert owner.fork_lock is before
    assert not before.locked()


def test_a_fork_waits_for_work_in_progress() -> None:
    owner = Owner()
    owner.fork_lock.acquire()
    released_at: list[float] = []

    def finish_work() -> None:
        time.sleep(0.2)
        released_at.append(time.monotonic())
        owner.fork_lock.release()

    worker = threading.Thread(target=finish_work)
    worker.start()
    assert in_child(lambda: owner.fork_lock.acquire(timeout=1)) == 0  # not inherited held
    forked_at = time.monotonic()
    worker.join(timeout=5)
    assert released_at
    assert released_at[0] <= forked_at


def test_a_fork_past_the_wait_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(forks, "FORK_WAIT_SECONDS", 0.05)
    owner = Owner()
    owner.fork_lock.acquire()  # busy for ever
    try:
        with caplog.at_level(logging.WARNING, logger="seawall"):
            assert in_child(lambda: owner.fork_lock.acquire(timeout=1) and owner.restarted == 1) == 0
        assert "still busy at fork" in caplog.text
    finally:
        owner.fork_lock.release()


def test_a_failing_restart_is_logged_and_the_child_goes_on() -> None:
    owner = Owner(fail=True)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[assignment,method-assign]
    logger = logging.getLogger("seawall")
    logger.addHandler(handler)
    try:  # the child inherits the handler: its log line lands in its copy of `records`
        logged = lambda: owner.restarted == 1 and any("could not restart" in r.getMessage() for r in records)  # noqa: E731
        assert in_child(logged) == 0
    finally:
        logger.removeHandler(handler)


def test_the_hooks_keep_nothing_alive() -> None:
    owner = Owner()
    gone = threading.Event()
    weakref.finalize(owner, gone.set)
    del owner
    gc.collect()
    assert gone.is_set()
    assert in_child(lambda: True) == 0  # a dead owner's hooks do nothing
