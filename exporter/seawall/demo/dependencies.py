"""Simulated downstream dependencies whose failure rate, latency and outage are set at run time.

Time is injected (an async `sleep`) and randomness is a seeded `random.Random`, so tests drive a
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

from seawall.core.settings import Flag, Number

__all__ = ["ChaosError", "DependencyError", "DependencyTimeout", "SimulatedDependency", "parse_chaos"]

Sleep = Callable[[float], Awaitable[None]]

MAX_LATENCY_MS = 60_000
CHAOS_RULES = {"failure_rate": Number(0.0, 1.0), "latency_ms": Number(0.0, MAX_LATENCY_MS), "outage": Flag()}
CHAOS_FIELDS = tuple(CHAOS_RULES)


class DependencyError(ConnectionError):
    """The simulated dependency failed (a transient, retryable error, like a reset connection)."""


class DependencyTimeout(TimeoutError):
    """The simulated dependency did not answer in time."""


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

    def to_dict(self) -> dict[str, Any]:
        return {"failure_rate": self.failure_rate, "latency_ms": self.latency_ms, "outage": self.outage}


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
    """A fake remote service: `await call()` sleeps its latency, then answers or raises."""

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

    async def call(self) -> dict[str, Any]:
        chaos = self.chaos
        with self._lock:
            self.calls += 1
            jitter = self._rng.uniform(0.5, 1.5)
            fails = chaos.outage or self._rng.random() < chaos.failure_rate
        latency_ms = self.base_latency_ms * jitter + chaos.latency_ms
        if latency_ms >= self.timeout_ms:
            await self._sleep(self.timeout_ms / 1000)
            with self._lock:
                self.failures += 1
            raise DependencyTimeout(f"{self.name} did not answer within {self.timeout_ms:.0f} ms")
        await self._sleep(latency_ms / 1000)
        if fails:
            with self._lock:
                self.failures += 1
            raise DependencyError(f"{self.name} refused the connection")
        return {"dependency": self.name, "latency_ms": round(latency_ms, 1)}
