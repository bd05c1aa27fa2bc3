"""The demo's supervised background worker ("order-sync") and its chaos switch.

It beats once per cycle; `POST /chaos/worker` makes it crash (`{"fail": true}`: every run raises,
so it restarts with backoff until the budget is spent and it is failed for good, which makes
`/health/ready` answer 503), hang (`{"hang": true}`: alive but no beats, so the heartbeat goes
stale), or heal; `{"restart": true}` supervises it again after a permanent failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from seawall.core.registry import Registry
from seawall.starlette._json import JSONResponse
from seawall.tasks.supervisor import SupervisedTask, Supervisor

from ..starlette import ApiError

__all__ = ["WORKER", "DemoWorker"]

log = logging.getLogger("seawall.demo")

WORKER = "order-sync"
_SWITCHES = ("fail", "hang", "restart")


class WorkerCrash(RuntimeError):
    """What the worker raises while chaos says `fail`."""


class DemoWorker:
    """Runs WORKER under a Supervisor; `settings` go to `supervise` (tests shorten the delays)."""

    def __init__(
        self,
        registry: Registry,
        *,
        cycle: float = 0.5,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        **settings: Any,
    ) -> None:
        self.supervisor = Supervisor(registry=registry, shutdown_timeout=5.0)
        self.fail = False
        self.hang = False
        self.cycles = 0
        self._cycle = cycle
        self._sleep = sleep
        self._settings = {
            "max_restarts": 5,
            "window": 60.0,
            "initial": 0.5,
            "max_delay": 5.0,
            "heartbeat_timeout": 5.0,
            "errors": registry.errors,
            **settings,
        }
        self.task: SupervisedTask | None = None

    async def _run(self) -> None:
        while True:
            if self.fail:
                raise WorkerCrash("order-sync lost its queue connection (chaos)")
            if not self.hang:
                self.cycles += 1
                if self.task is not None:
                    self.task.beat()
            await self._sleep(self._cycle)

    def start(self) -> SupervisedTask:
        self.task = self.supervisor.supervise(WORKER, self._run, **self._settings)
        return self.task

    async def stop(self) -> None:
        await self.supervisor.shutdown()

    def status(self) -> dict[str, Any]:
        state = None if self.task is None else str(self.task.state)
        return {"fail": self.fail, "hang": self.hang, "state": state, "cycles": self.cycles}

    def update(self, body: object) -> dict[str, Any]:
        """Apply `{"fail"|"hang"|"restart": bool}`; anything else is a 422 naming the field."""
        if not isinstance(body, dict):
            raise ApiError(422, "invalid_parameter", "the body must be a JSON object", field="body")
        for key, value in body.items():
            if key not in _SWITCHES:
                raise ApiError(
                    422,
                    "invalid_parameter",
                    f"unknown field; allowed: {', '.join(_SWITCHES)}",
                    field=str(key)[:64],
                )
            if not isinstance(value, bool):
                raise ApiError(422, "invalid_parameter", f"{key} must be true or false", field=key)
        self.fail = body.get("fail", self.fail)
        self.hang = body.get("hang", self.hang)
        if body.get("restart") and self.task is not None and self.task.done:
            self.start()
        log.warning("chaos: %s is now %s", WORKER, self.status())
        return self.status()

    async def endpoint(self, request: Request) -> Response:
        """`GET /chaos/worker` shows the switches; `POST` changes them (JSON, as `/chaos/{dependency}`)."""
        if request.method == "GET":
            return JSONResponse({WORKER: self.status()})
        from .app import chaos_body  # app imports this module: import at call time

        body = await chaos_body(request)
        return JSONResponse({WORKER: self.update(body)})
