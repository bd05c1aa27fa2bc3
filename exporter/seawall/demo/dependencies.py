"""The demo's downstream dependencies: what each one answers, set at run time by the chaos API.

A `SimulatedDependency` decides one request's fate (latency, then an answer or a fault); the
upstream HTTP app (`seawall.demo.upstream`) turns that into a real HTTP exchange on loopback. Time
is injected (an async `sleep`) and randomness is a seeded `random.Random`, so tests drive a
dependency through an outage without waiting and get the same failures every run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from seawall.core.settings import Choice, Flag, Number

__all__ = ["Answer", "ChaosError", "SimulatedDependency", "parse_chaos"]

Sleep = Callable[[float], Awaitable[None]]

MAX_LATENCY_MS = 60_000
HANG_SECONDS = 30.0  # a hung upstream resets the connection after this (bounded: it ends)
FAULTS = ("status", "reset", "hang")
CHAOS_RULES = {
    "failure_rate": Number(0.0, 1.0),
    "latency_ms": Number(0.0, MAX_LATENCY_MS),
    "outage": Flag(),
    "fault": Choice(FAULTS),  # what a failing call gets: an error status, a reset, no answer
    "status": Number(400, 599, integer=True),  # the error status a failing call answers with
    "retry_after": Number(0, 3600, integer=True, optional=True),  # seconds, sent with error statuses
}
CHAOS_FIELDS = tuple(CHAOS_RULES)


class ChaosError(ValueError):
    """A chaos setting was refused; `field` names it (for the 422 body)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Chaos:
    failure_rate: float = 0.0  # share of calls that fail, 0..1
    latency_ms: float = 0.0  # added to every call
    outage: bool = False  # every call fails
    fault: str = "status"
    status: int = 503
    retry_after: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's fate: after `latency` seconds, `status` with `body`, or `fault` ("reset",
    "hang") instead of any answer."""

    latency: float
    status: int = 200
    body: Mapping[str, Any] | None = None
    retry_after: int | None = None
    fault: str | None = None


def parse_chaos(body: Any, current: Chaos) -> Chaos:
    """Validate a (partial) chaos update; unknown or out-of-range fields raise ChaosError naming them."""
    if not isinstance(body, Mapping):
        raise ChaosError("body", 'the body must be a JSON object like {"failure_rate": 0.5}')
    for key in body:
        if key not in CHAOS_FIELDS:
            raise ChaosError(str(key)[:64] or "body", f"unknown field; allowed: {', '.join(CHAOS_FIELDS)}")
    changes = {}
    for key, value in body.items():
        try:
            changes[key] = CHAOS_RULES[key].check(key, value)  # the settings' rules: NaN, inf refused
        except (TypeError, ValueError) as exc:
            raise ChaosError(key, str(exc)) from None
    return dataclasses.replace(current, **changes)


class SimulatedDependency:
    """A remote service's behaviour: `await answer()` sleeps its latency and says what to send.

    Past `timeout_ms` it gives up like the gateway in front of a real service: 504 after that long.
    """

    def __init__(
        self,
        name: str,
        *,
        base_latency_ms: float = 20.0,
        timeout_ms: float = 2_000.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.base_latency_ms = base_latency_ms
        self.timeout_ms = timeout_ms
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self.chaos = Chaos()
        self.calls = 0
        self.failures = 0

    def update(self, body: Any) -> Chaos:
        with self._lock:
            self.chaos = parse_chaos(body, self.chaos)
            return self.chaos

    def decide(self) -> Answer:
        """This request's fate (counted), without waiting."""
        chaos = self.chaos
        with self._lock:
            self.calls += 1
            jitter = self._rng.uniform(0.5, 1.5)
            fails = chaos.outage or self._rng.random() < chaos.failure_rate
            latency_ms = self.base_latency_ms * jitter + chaos.latency_ms
            if latency_ms >= self.timeout_ms:
                self.failures += 1
                return Answer(self.timeout_ms / 1000, 504, {"error": f"{self.name} gave up"})
            if not fails:
                body = {"dependency": self.name, "latency_ms": round(latency_ms, 1)}
                return Answer(latency_ms / 1000, 200, body)
            self.failures += 1
        if chaos.fault != "status":
            return Answer(latency_ms / 1000, fault=chaos.fault)
        error = {"error": f"{self.name} failed"}
        return Answer(latency_ms / 1000, chaos.status, error, chaos.retry_after)

    async def answer(self) -> Answer:
        """Decide, then wait out the latency (a hang waits `HANG_SECONDS` on top)."""
        decided = self.decide()
        await self._sleep(decided.latency + (HANG_SECONDS if decided.fault == "hang" else 0.0))
        return decided
