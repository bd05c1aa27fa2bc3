"""Registry state as JSON-ready dicts: the one place the web layer turns snapshots into payloads."""

from __future__ import annotations

import math
import time
from typing import Any

from .._registry import Registry

__all__ = [
    "breakers_payload",
    "error_stats",
    "features_payload",
    "recent_errors",
    "registry_payload",
    "retries_payload",
]


def _finite(value: Any) -> Any:
    """JSON has no Infinity/NaN: report them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {key: _finite(value) for key, value in data.items()}


def breakers_payload(registry: Registry) -> list[dict[str, Any]]:
    return [_clean(breaker.snapshot().to_dict()) for breaker in registry.breakers()]


def retries_payload(registry: Registry) -> list[dict[str, Any]]:
    return [_clean(retry.snapshot().to_dict()) for retry in registry.retries()]


def features_payload(registry: Registry) -> list[dict[str, Any]]:
    return [_clean(feature.snapshot().to_dict()) for feature in registry.features()]


def error_stats(registry: Registry) -> dict[str, Any]:
    """The aggregator's window statistics (total, by type/category/source, rate)."""
    return {key: _finite(value) for key, value in dict(registry.errors.stats()).items()}


# Never served: a stack or the exception object would expose a downstream's internals.
_NEVER = frozenset({"traceback", "stack", "stacktrace", "exception", "exc_info", "args"})


def recent_errors(registry: Registry, limit: int, include_messages: bool = False) -> list[dict[str, Any]]:
    """The latest errors, newest first; messages only when asked for (they are redacted, still text)."""
    drop = _NEVER if include_messages else _NEVER | {"message"}
    return [
        {key: _finite(value) for key, value in dict(item).items() if key not in drop}
        for item in registry.errors.recent(limit)
    ]


def registry_payload(registry: Registry, recent: int = 10) -> dict[str, Any]:
    """Everything the status page draws, in one object (one SSE frame)."""
    return {
        "time": time.time(),
        "breakers": breakers_payload(registry),
        "retries": retries_payload(registry),
        "features": features_payload(registry),
        "errors": error_stats(registry),
        "recent_errors": recent_errors(registry, recent),
    }
