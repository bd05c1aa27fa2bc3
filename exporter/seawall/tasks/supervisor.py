"""Supervised asyncio tasks: restart a long-lived coroutine when it raises, within a budget.

`seawall.supervise(name, factory)` runs `await factory()` in its own asyncio task. When it raises,
the task waits a capped, fully jittered exponential delay and calls `factory()` again; after
`max_restarts` restarts within `window` seconds (or an error `restart_on` refuses) it is failed
for good: one CRITICAL log line, a `TaskFailed(will_restart=False)` event, and `/health/ready`
turns unhealthy if the task is critical. A coroutine that returns is `finished`, not failed.

Only asyncio: a thread cannot be cancelled, so shutdown could not be bounded honestly.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from seawall.core.enums import ErrorCategory
from seawall.core.factory import obtain
from seawall.core.kinds import Kind, KindSpec, register_kind
from seawall.core.logsafe import log_value
from seawall.core.primitive import Primitive
from seawall.core.registry import Registry, default_registry
from seawall.core.settings import check_callables, check_duration, check_errors
from seawall.core.snapshots import TaskSnapshot
from seawall.errors.classify import classify
from seawall.events import TaskFailed, TaskStateChanged
from seawall.retries.backoff import Backoff
from seawall.retries.retry import _retry_predicate
from seawall.tasks.record import DONE, TaskRecord, TaskState
from seawall.tasks.settings import TaskSettings

__all__ = ["SupervisedTask", "Supervisor", "current_task", "default_supervisor", "supervise"]

log = logging.getLogger("seawall")

Factory = Callable[[], Awaitable[object]]
_current: contextvars.ContextVar[SupervisedTask | None] = contextvars.ContextVar("seawall_task", default=None)


def current_task() -> SupervisedTask | None:
    """The supervised task whose coroutine is running now (so it can `beat()`), or None."""
    return _current.get()


def _running_loop(name: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"task {name!r}: supervise() needs a running event loop (call it from async code, "
            "e.g. your app's lifespan startup)"
        ) from None


class SupervisedTask(Primitive[TaskSettings]):
    """One named, restarted coroutine; made and started by `Supervisor.supervise`."""

    kind = Kind.TASK

    def __init__(
        self,
        name: str,
        factory: Factory,
        *,
        settings: TaskSettings | None = None,
        classifier: Callable[[BaseException], ErrorCategory] = classify,
        errors: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        registry: Registry | None = None,
        **overrides: Any,
    ) -> None:
        if inspect.iscoroutine(factory):
            raise TypeError(
                f"task {name!r}: factory must be a function returning a coroutine, got a coroutine"
            )
        super().__init__(name, settings=settings, clock=clock, registry=registry, **overrides)
        settings = self.settings
        check_callables(
            {"factory": factory, "classifier": classifier, "wall_clock": wall_clock, "sleep": sleep}
        )
        check_errors(errors)
        self.backoff = Backoff.of(settings, rng)
        self._record = TaskRecord(name, settings, clock, wall_clock)
        self._restartable: Callable[[BaseException, ErrorCategory], bool] = (
            (lambda exc, category: True)
            if settings.restart_on is None
            else _retry_predicate(settings.restart_on, classifier)
        )
        self._factory = factory
        self._classifier = classifier
        self._errors = errors
        self._sleep = sleep
        self.injected.update(factory=factory, classifier=classifier, errors=errors)
        self.injected.update(wall_clock=wall_clock, sleep=sleep, rng=rng)
        self._task: asyncio.Task[None] | None = None
        bus = self.registry.bus
        self._on_state, self._on_failed = bus.channel(TaskStateChanged), bus.channel(TaskFailed)
        self._report = bus.report_error
        self.registry.add(self)

    @property
    def state(self) -> TaskState:
        return self._record.state

    @property
    def done(self) -> bool:
        return self._record.state in DONE

    def snapshot(self) -> TaskSnapshot:
        return self._record.snapshot()

    def beat(self) -> None:
        """Say "still making progress"; with `heartbeat_timeout` set, silence longer than it is stale."""
        self._record.beat()

    def start(self) -> None:
        """Run the task in the current event loop (once)."""
        if self._task is not None:
            return
        self._task = _running_loop(self.name).create_task(self._run(), name=f"seawall-task-{self.name}")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Cancelled before its first step, the coroutine never saw the cancellation: still stopped."""
        if not self.done:
            self._move(TaskState.STOPPED)

    def cancel(self) -> asyncio.Task[None] | None:
        """Ask the task to stop; returns its asyncio task while that is still running."""
        task = self._task
        if task is None or task.done():
            return None
        task.cancel()
        return task

    async def stop(self, timeout: float = 10.0) -> bool:
        """Cancel the task and wait up to `timeout` seconds; True when it has stopped."""
        if self._task is None:  # never started
            if not self.done:
                self._move(TaskState.STOPPED)
            return True
        running = self.cancel()
        if running is not None:
            await asyncio.wait({running}, timeout=timeout)
        return self._task.done()

    async def wait(self) -> TaskState:
        """Wait until the task is finished, failed or stopped; returns that state."""
        if self._task is not None:
            await asyncio.wait({self._task})
        return self.state

    # -- the restart loop ------------------------------------------------------------------------

    def _move(self, to: TaskState) -> None:
        previous = self._record.move(to)
        if previous is not to and self._on_state.listeners:
            self._on_state.publish(TaskStateChanged(self.name, previous, to))

    async def _run(self) -> None:
        _current.set(self)  # this asyncio task's own context: current_task() inside the coroutine
        while True:
            self._move(TaskState.RUNNING)
            try:
                awaitable = self._factory()
                if not inspect.isawaitable(awaitable):
                    raise TypeError(f"factory must return an awaitable, got {type(awaitable).__name__}")
                await awaitable
            except asyncio.CancelledError:
                self._move(TaskState.STOPPED)
                raise
            except Exception as exc:
                delay = self._failed(exc)
                if delay is None:
                    return
                try:
                    await self._sleep(delay)
                except asyncio.CancelledError:
                    self._move(TaskState.STOPPED)
                    raise
                self._record.restarted(type(exc).__name__)
            except BaseException as exc:  # KeyboardInterrupt, SystemExit: never swallowed
                self._record.failed(exc)
                self._give_up(exc, ErrorCategory.UNKNOWN, "it raised " + type(exc).__name__)
                raise
            else:
                self._move(TaskState.FINISHED)
                return

    def _failed(self, exc: Exception) -> float | None:
        """Classify, record, decide: the delay before the restart, or None when failed for good."""
        try:
            category = self._classifier(exc)
        except Exception:
            category = ErrorCategory.UNKNOWN
        self._record.failed(exc)
        if self._errors is not None:
            try:
                self._errors.record(exc, source=self.name)
            except Exception as broken:
                self._report("errors", broken)
        try:
            restartable = self._restartable(exc, category)
        except Exception as broken:
            self._report("restart_on", broken)
            restartable = True  # a broken predicate must not turn a restartable task into a dead one
        policy = self._record.policy
        recent = self._record.recent_restarts()
        if not restartable:
            self._give_up(exc, category, "restart_on refuses this error")
            return None
        if recent >= policy.max_restarts:
            self._give_up(exc, category, f"{recent} restarts within {policy.window:g}s")
            return None
        delay = self.backoff.delay(recent + 1)
        previous = self._record.backing_off(delay)
        log.warning(
            "seawall task %s failed (%s); restart %d of %d in %.2fs",
            log_value(self.name),
            type(exc).__name__,
            recent + 1,
            policy.max_restarts,
            delay,
        )
        if self._on_failed.listeners:
            self._on_failed.publish(TaskFailed(self.name, type(exc).__name__, category, True, delay))
        if self._on_state.listeners:
            self._on_state.publish(TaskStateChanged(self.name, previous, TaskState.BACKING_OFF))
        return delay

    def _give_up(self, exc: BaseException, category: ErrorCategory, why: str) -> None:
        previous = self._record.gave_up()
        log.critical(
            "seawall task %s failed permanently (%s); last error %s: %s",
            log_value(self.name),
            why,
            type(exc).__name__,
            self._record.last_error_message,
        )
        if self._on_failed.listeners:
            self._on_failed.publish(TaskFailed(self.name, type(exc).__name__, category, False, 0.0))
        if self._on_state.listeners:
            self._on_state.publish(TaskStateChanged(self.name, previous, TaskState.FAILED))

    def __repr__(self) -> str:
        return f"SupervisedTask({self.name!r}, state={self.state.value})"


class Supervisor:
    """Starts supervised tasks and stops them all, within a bounded time, on shutdown.

    `defaults` are settings every task gets unless `supervise` overrides them. Also an async
    context manager: leaving it shuts the tasks down.
    """

    def __init__(
        self, *, registry: Registry | None = None, shutdown_timeout: float = 10.0, **defaults: Any
    ) -> None:
        self.registry = default_registry() if registry is None else registry
        self.shutdown_timeout = check_duration("shutdown_timeout", shutdown_timeout)
        self._defaults = defaults
        self._tasks: list[SupervisedTask] = []

    @property
    def tasks(self) -> list[SupervisedTask]:
        return list(self._tasks)

    def supervise(self, name: str, factory: Factory, **settings: Any) -> SupervisedTask:
        """The task `name` running `await factory()`, started in the running loop: created on first
        use, returned again while alive when asked with the same factory and settings (others are a
        ValueError naming them, as every factory's, see `obtain`), replaced once it has finished,
        failed or stopped."""
        _running_loop(name)  # before anything joins the registry
        existing = self.registry.get(Kind.TASK, name)
        if isinstance(existing, SupervisedTask) and existing.done:
            self.registry.remove(Kind.TASK, name)
            self._tasks = [task for task in self._tasks if task is not existing]
        options = {"factory": factory, **self._defaults, **settings}
        task: SupervisedTask = obtain(Kind.TASK, name, self.registry, options)
        if task not in self._tasks:
            task.start()
            self._tasks.append(task)
        return task

    async def shutdown(self, timeout: float | None = None) -> list[str]:
        """Cancel every task and wait up to `timeout` (default `shutdown_timeout`) seconds in all.

        Returns the names of tasks that had not stopped in time (they are logged too).
        """
        limit = self.shutdown_timeout if timeout is None else timeout
        pending = {name: running for name, running in ((t.name, t.cancel()) for t in self._tasks) if running}
        if pending:
            await asyncio.wait(pending.values(), timeout=limit)
        late = [name for name, running in pending.items() if not running.done()]
        if late:
            log.warning("seawall tasks still running %.1fs after shutdown began: %s", limit, ", ".join(late))
        return late

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()


_defaults: weakref.WeakKeyDictionary[Registry, Supervisor] = weakref.WeakKeyDictionary()


def default_supervisor(registry: Registry | None = None) -> Supervisor:
    """The supervisor `seawall.supervise` uses for `registry` (default registry when None)."""
    reg = default_registry() if registry is None else registry
    found = _defaults.get(reg)
    if found is None:
        found = _defaults.setdefault(reg, Supervisor(registry=reg))
    return found


def supervise(
    name: str, factory: Factory, *, registry: Registry | None = None, **settings: Any
) -> SupervisedTask:
    """Run `await factory()` as the supervised task `name` (see `SupervisedTask` for the settings);
    stop them all with `await seawall.default_supervisor().shutdown()`."""
    return default_supervisor(registry).supervise(name, factory, **settings)


register_kind(KindSpec.of(SupervisedTask, TaskSnapshot, supervise))
