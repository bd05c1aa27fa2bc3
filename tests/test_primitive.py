"""`Primitive`: every kind stands on the one base, reads its settings type from the generic argument,
and keeps `name`, `settings`, `registry` and `injected` as plain slots (the hot paths read them)."""

from __future__ import annotations

import inspect
import types
from typing import Any

import pytest

import seawall
from seawall.core.kinds import Kind, KindSpec, declared
from seawall.core.primitive import Primitive, given
from seawall.limits.settings import TimeoutSettings


class _Probe(Primitive[TimeoutSettings]):
    """A kind made in a test (reusing a settings type: a new one would count as a kind's own)."""

    __slots__ = ("seconds",)

    kind = Kind.HEDGE  # any member: the probe is never registered

    def __init__(self, name: str, seconds: float | None = None, **options: Any) -> None:
        super().__init__(name, **given(seconds=seconds), **options)
        self.seconds = self.settings.seconds


@pytest.mark.parametrize("spec", declared(), ids=lambda spec: spec.kind.value)
def test_every_kind_is_a_primitive_with_its_settings_type_from_the_generic_argument(spec: KindSpec) -> None:
    assert issubclass(spec.cls, Primitive)
    assert spec.cls.settings_type is spec.settings
    for attribute in ("name", "settings", "registry", "injected"):
        # a property or a second attribute under another name (`_name`) would shadow the slot
        assert isinstance(inspect.getattr_static(spec.cls, attribute), types.MemberDescriptorType), attribute


def test_the_base_does_the_common_setup() -> None:
    registry = seawall.Registry()
    probe = _Probe("p", 5, registry=registry)
    assert (probe.name, probe.seconds, probe.registry) == ("p", 5.0, registry)
    assert probe.config == {"seconds": 5.0}
    assert probe.injected == {"clock": probe._clock}
    assert registry.get(Kind.HEDGE, "p") is None  # registering is the kind's last step, not the base's
    assert _Probe("q", settings=TimeoutSettings(seconds=2)).seconds == 2.0
    assert _Probe("r", 1.0).registry is seawall.default_registry()


@pytest.mark.parametrize(
    ("args", "options", "error", "message"),
    [
        (("",), {}, ValueError, "name must be a non-empty str, got ''"),
        (("p",), {"clock": 1.0}, TypeError, "clock must be callable, got 1.0"),
        (("p", -1.0), {}, ValueError, r"seconds must be in \(0, .*\], got -1.0"),
        (("p",), {"second": 2}, TypeError, "unknown timeout setting 'second'; known: seconds"),
        (("p", 2), {"settings": TimeoutSettings(1.0)}, TypeError, r"not both \(got \['seconds'\]\)"),
        (("p",), {"settings": object()}, TypeError, "settings must be a TimeoutSettings"),
    ],
)
def test_the_base_refuses_bad_input_naming_the_field(
    args: tuple[Any, ...], options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        _Probe(*args, **options)


def test_given_leaves_out_positional_settings_not_given() -> None:
    assert given(rate=None, per=2.0, burst=0) == {"per": 2.0, "burst": 0}
