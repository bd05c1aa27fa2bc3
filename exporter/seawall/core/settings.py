"""Settings objects and the one place their fields are validated.

Every primitive's settings are a frozen dataclass deriving from `Settings`; each field says its rule
in its metadata (`number(...)`, `flag(...)`, `choice(...)`), and `Settings.__post_init__` applies
them all, so a bad value is refused at construction, naming the setting and the value: `TypeError`
for a wrong type (a bool is not a number), `ValueError` for a value out of range (NaN and infinity
are out of every range). Cross-field rules go in `check()`.

Upper bounds are explicit: a value past them would hang (a ring of 10**9 buckets), overflow a
wait (`threading` refuses timeouts past `TIMEOUT_MAX`; a lost wake-up loses a bulkhead slot) or
divide by zero, and none makes sense for a resilience setting.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

__all__ = [
    "MAX_COUNT",
    "MAX_SECONDS",
    "Choice",
    "Flag",
    "Number",
    "Settings",
    "check_callables",
    "check_duration",
    "check_errors",
    "check_identity",
    "choice",
    "flag",
    "number",
    "resolve",
    "seconds",
]

MAX_SECONDS = 1_000_000.0  # about 11.6 days: longer than any in-process wait, far below TIMEOUT_MAX
MAX_COUNT = 1_000_000_000  # counts and thresholds; sizes that allocate have lower bounds of their own
S = TypeVar("S", bound="Settings")


class _Rule:
    """What every field rule does: `check` a value (returning it normalised) or raise naming it."""

    __slots__ = ()

    def check(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    def accepts(self, value: Any) -> bool:
        """Whether `check` would pass (for tests deriving good and bad values from the rule)."""
        try:
            self.check("value", value)
        except (TypeError, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class Number(_Rule):
    """A numeric setting: an int or a float (never a bool), finite, within [low, high]."""

    low: float
    high: float
    low_open: bool = False  # True: the low bound itself is refused (> low rather than >= low)
    integer: bool = False
    optional: bool = False  # None is allowed (and means "off")

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        numeric = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            what = "an int" if self.integer else "a number"
            raise TypeError(f"{name} must be {what}{' or None' if self.optional else ''}, got {value!r}")
        low_ok = value > self.low if self.low_open else value >= self.low
        if not (low_ok and value <= self.high) or not math.isfinite(value):
            low = f"{'(' if self.low_open else '['}{_bound(self.low)}"
            raise ValueError(f"{name} must be in {low}, {_bound(self.high)}], got {value!r}")
        return int(value) if self.integer else float(value)


def _bound(value: float) -> str:
    return f"{int(value):_}" if value == int(value) else repr(value)


@dataclass(frozen=True, slots=True)
class Flag(_Rule):
    """A bool setting; 0 and 1 are not bools."""

    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {value!r}")
        return value


@dataclass(frozen=True, slots=True)
class Choice(_Rule):
    """One of a closed set of strings."""

    values: tuple[str, ...]

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be one of {', '.join(map(repr, self.values))}, got {value!r}")
        if value not in self.values:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, self.values))}, got {value!r}")
        return value


Rule = Number | Flag | Choice


def number(
    default: Any,
    low: float,
    high: float = MAX_COUNT,
    *,
    low_open: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> Any:
    """A dataclass field holding a number within [low, high] (`low_open`: above low)."""
    return field(default=default, metadata={"rule": Number(low, high, low_open, integer, optional)})


def seconds(default: float | None, *, zero: bool = False, optional: bool = False) -> Any:
    """A duration in seconds: > 0 (>= 0 with `zero`), finite, at most `MAX_SECONDS`."""
    return number(default, 0.0, MAX_SECONDS, low_open=not zero, optional=optional)


def check_duration(name: str, value: Any, *, zero: bool = False) -> float:
    """One duration argument that is not a setting (a supervisor's `shutdown_timeout`), by the rule of
    `seconds()`: > 0 (>= 0 with `zero`), finite, bounded. Other arguments use a rule directly:
    `Number(0, MAX_COUNT, integer=True).check("limit", limit)`."""
    return float(Number(0.0, MAX_SECONDS, low_open=not zero).check(name, value))


def flag(default: bool) -> Any:
    return field(default=default, metadata={"rule": Flag()})


def choice(default: str, values: Collection[str]) -> Any:
    return field(default=default, metadata={"rule": Choice(tuple(values))})


@dataclass(frozen=True)
class Settings:
    """The base of every settings dataclass: rules applied (and values normalised) at construction."""

    kind_name: ClassVar[str] = "primitive"  # for messages: "unknown retry setting ..."

    def __post_init__(self) -> None:
        for item in fields(self):
            rule: Rule | None = item.metadata.get("rule")
            if rule is not None:
                object.__setattr__(self, item.name, rule.check(item.name, getattr(self, item.name)))
        self.check()

    def check(self) -> None:
        """Rules across fields (after each field passed its own)."""

    @classmethod
    def of(cls: type[S], settings: Mapping[str, Any]) -> S:
        """Settings from keyword arguments; an unknown name is a TypeError that lists the known ones."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(
                f"unknown {cls.kind_name} setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        return cls(**settings)

    def as_config(self) -> dict[str, Any]:
        """The settings as the `config` dict a primitive reports (and its factory compares)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        """Each field's rule, by field name (fields without one, such as callables, are left out)."""
        return {item.name: item.metadata["rule"] for item in fields(cls) if "rule" in item.metadata}


def resolve(cls: type[S], settings: S | None, overrides: Mapping[str, Any], **positional: Any) -> S:
    """What a constructor was given: `settings=` or the settings' fields as keywords (and, for some,
    by position: `positional`, where None means not given), not both."""
    overrides = {**{key: value for key, value in positional.items() if value is not None}, **overrides}
    if settings is None:
        return cls.of(overrides)
    if overrides:
        raise TypeError(f"give settings= or keyword settings, not both (got {sorted(overrides)})")
    if not isinstance(settings, cls):
        raise TypeError(f"settings must be a {cls.__name__}, got {settings!r}")
    return settings


def check_identity(name: object, clock: object) -> None:
    """The checks every primitive makes of its name and injected clock."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    check_callables({"clock": clock})


def check_errors(errors: object) -> None:
    """An optional error sink: None, or anything with `record(exc, source=...)`."""
    if errors is not None and not callable(getattr(errors, "record", None)):
        raise TypeError(f"errors must have a record(exc, source=...) method, got {errors!r}")


def check_callables(values: Mapping[str, Any]) -> None:
    """Injected functions (clock, sleep, classifier, ...) must be callable, named in the error."""
    for name, value in values.items():
        if not callable(value):
            raise TypeError(f"{name} must be callable, got {value!r}")
