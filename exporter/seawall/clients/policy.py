"""`HttpPolicy`: the stages of a resilient HTTP client, their defaults and which requests may repeat.

The defaults are .NET's standard resilience handler (Microsoft.Extensions.Http.Resilience on Polly
v8: a 1,000-call concurrency limit, a 30 s total timeout, 3 jittered exponential retries from 2 s,
a breaker on a 10% failure ratio over 30 s with at least 100 calls and a 5 s break, a 10 s attempt
timeout; hedging, off by default, after 2 s as .NET's standard hedging handler), plus one seawall
default from the field: the breaker also opens after 10 consecutive failures, so a client with
less than 100 calls in 30 s is protected too. Each stage is the
settings of the seawall primitive that runs it (a mapping merged over the default), so a bad value
is refused by that primitive, naming the field; `None` removes the stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

__all__ = ["IDEMPOTENT_METHODS", "TRANSIENT_STATUSES", "HttpPolicy"]

# RFC 9110 9.2.2: repeating these has the effect of sending them once (TRACE is left out: nobody
# retries it). Anything else is retried only with an Idempotency-Key header.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Answers worth another attempt; 429 is the upstream pacing us, not failing (it never trips the breaker).
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _frozen(values: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(values))


_DEFAULTS: dict[str, Mapping[str, Any]] = {
    "bulkhead": _frozen({"max_concurrent": 1000, "max_wait": 0.0}),
    "retry": _frozen({"attempts": 4, "initial": 2.0, "multiplier": 2.0, "jitter": 0.5, "max_delay": 30.0}),
    "breaker": _frozen(
        {
            "failure_rate_threshold": 0.1,
            "window_type": "time",
            "window_size": 30,
            "minimum_calls": 100,
            "reset_timeout": 5.0,
            "failure_threshold": 10,
        }
    ),
    "hedge": _frozen({"delay": 2.0, "max_hedges": 1, "budget": 0.1}),
}
_STAGES = tuple(_DEFAULTS)
_RESERVED = {"retry": ("retry_on", "classifier"), "breaker": ("record_on", "ignore_on")}


@dataclass(frozen=True)
class HttpPolicy:
    """What a resilient transport does, outermost stage first; `HttpPolicy.of(...)` merges changes."""

    bulkhead: Mapping[str, Any] | None = field(default_factory=lambda: _DEFAULTS["bulkhead"])
    total_timeout: float | None = 30.0
    retry: Mapping[str, Any] | None = field(default_factory=lambda: _DEFAULTS["retry"])
    hedge: Mapping[str, Any] | None = (
        None  # async clients only; off by default, as in .NET's standard handler
    )
    breaker: Mapping[str, Any] | None = field(default_factory=lambda: _DEFAULTS["breaker"])
    attempt_timeout: float | None = 10.0
    retry_methods: frozenset[str] = IDEMPOTENT_METHODS
    transient_statuses: frozenset[int] = TRANSIENT_STATUSES
    max_authorities: int = 32  # breakers per transport; later hosts run without one (bounded names)

    def __post_init__(self) -> None:
        for stage in _STAGES:
            value = getattr(self, stage)
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise TypeError(f"{stage} must be a mapping of its settings or None, got {value!r}")
            for key in _RESERVED.get(stage, ()):
                if key in value:
                    raise TypeError(f"{stage} setting {key!r} is decided by the HTTP classification")
            object.__setattr__(self, stage, _frozen(value))
        for stage in ("total_timeout", "attempt_timeout"):
            value = getattr(self, stage)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
            ):
                raise ValueError(f"{stage} must be a number of seconds > 0 or None, got {value!r}")
        object.__setattr__(self, "retry_methods", _methods(self.retry_methods))
        object.__setattr__(self, "transient_statuses", _statuses(self.transient_statuses))
        limit = self.max_authorities
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"max_authorities must be an int >= 0, got {limit!r}")

    @classmethod
    def of(cls, **changes: Any) -> HttpPolicy:
        """The defaults with `changes`: a stage's mapping is merged over its default (`retry={"attempts":
        2}` keeps the delays), True means the default, None or False removes the stage."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown HTTP policy setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        merged: dict[str, Any] = {}
        for key, value in changes.items():
            if key in _STAGES:
                if value is True:
                    value = _DEFAULTS[key]
                elif value is False:
                    value = None
                elif isinstance(value, Mapping):
                    value = {**_DEFAULTS[key], **value}
            merged[key] = value
        return replace(cls(), **merged)


def _methods(values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
        raise TypeError(f"retry_methods must be a collection of method names, got {values!r}")
    return frozenset(v.upper() for v in values)


def _statuses(values: Iterable[int]) -> frozenset[int]:
    items = frozenset(values)
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int) or not 100 <= v <= 599]
    if bad:
        raise ValueError(f"transient_statuses must be HTTP status codes (100-599), got {bad[0]!r}")
    return items
