"""`Primitive`: the setup every named primitive shares, written once.

Every kind takes a name, `settings=` or the settings' fields as keywords, a `clock` and a
`registry`, and checks them the same way. The base does that and keeps the results in plain slots
(`name`, `settings`, `registry`, `injected`, `_clock`), so a kind's `__init__` holds only what is
its own: its extra injected parts, its state, and `self.registry.add(self)` once that state is
complete. The settings type is read from the generic argument (`Primitive[TimeoutSettings]`), so
it is written once per kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from seawall.core.kinds import Kind
from seawall.core.registry import Registry, default_registry
from seawall.core.settings import Settings, check_identity, resolve

__all__ = ["Primitive", "given"]

S = TypeVar("S", bound=Settings)


class Primitive(Generic[S]):
    """The base of every kind: name and clock checked, settings resolved, registry chosen.

    Subclasses pass settings they take by position through `given(...)`, and register themselves
    last.
    """

    __slots__ = ("__weakref__", "_clock", "injected", "name", "registry", "settings")

    kind: ClassVar[Kind]
    settings_type: ClassVar[type[Settings]]  # from the generic argument, see __init_subclass__

    name: str
    settings: S
    registry: Registry
    injected: dict[str, Any]  # what was injected, for the factory's one rule (`core/factory.py`)
    _clock: Callable[[], float]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            if get_origin(base) is Primitive:
                (cls.settings_type,) = get_args(base)

    def __init__(
        self,
        name: str,
        *,
        settings: S | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
        **overrides: Any,
    ) -> None:
        check_identity(name, clock)
        self.settings = cast(S, resolve(self.settings_type, settings, overrides))
        self.name = name
        self._clock = clock
        self.injected = {"clock": clock}
        self.registry = default_registry() if registry is None else registry

    @property
    def config(self) -> dict[str, Any]:
        """The settings as a dict: what the registry reports and a factory call compares."""
        return self.settings.as_config()


def given(**positional: Any) -> dict[str, Any]:
    """Settings a constructor took by position, as keywords for `Primitive.__init__`; None means not
    given (a keyword's None is a value: `fallback=None`)."""
    return {key: value for key, value in positional.items() if value is not None}
