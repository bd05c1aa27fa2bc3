"""A feature's settings: one frozen, validated object (`FeatureSettings`), as the breaker's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from seawall.core.settings import Settings, flag, number, seconds

__all__ = ["NO_FALLBACK", "FeatureSettings"]


class _NoFallback:
    """The `fallback` of a feature that has none (None is a fallback value like any other)."""

    def __repr__(self) -> str:
        return "NO_FALLBACK"


NO_FALLBACK: Final[Any] = _NoFallback()


@dataclass(frozen=True)
class FeatureSettings(Settings):
    """When the feature switches itself off (`failure_threshold` straight failures, off for
    `reset_timeout` seconds), what it answers instead (`fallback`, or `fallback_fn(*args)`), and
    whether the last good value answers first (`stale`, for at most `stale_ttl` seconds)."""

    kind_name: ClassVar[str] = "feature"

    failure_threshold: int = number(5, 1, integer=True)
    reset_timeout: float = seconds(30.0)
    stale: bool = flag(False)
    stale_ttl: float | None = seconds(None, optional=True)
    fallback: Any = NO_FALLBACK
    fallback_fn: Callable[..., Any] | None = None

    def check(self) -> None:
        if self.fallback_fn is not None and not callable(self.fallback_fn):
            raise TypeError(f"fallback_fn must be callable, got {self.fallback_fn!r}")
        if self.fallback is not NO_FALLBACK and self.fallback_fn is not None:
            raise ValueError(
                f"give fallback or fallback_fn, not both (got fallback={self.fallback!r}, "
                f"fallback_fn={self.fallback_fn!r})"
            )
