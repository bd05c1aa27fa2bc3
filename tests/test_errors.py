"""classify, registration precedence, retry-after hints."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Iterator
from typing import Any

import pytest

import seawall
from seawall import ErrorCategory, classify, register_classifier, register_error_type, retry_after_hint
from seawall.errors.classify import clear_registrations

C = ErrorCategory


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    clear_registrations()
    yield
    clear_registrations()


class Resp:
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class HTTPStatusError(Exception):
    """Shaped like httpx/requests errors: the status lives on `.response`."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = Resp(status, headers)


class WithStatus(Exception):
    def __init__(self, **attrs: Any) -> None:
        super().__init__("x")
        self.__dict__.update(attrs)


class ReadTimeout(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), C.TRANSIENT),
        (asyncio.TimeoutError(), C.TRANSIENT),
        (ReadTimeout(), C.TRANSIENT),
        (ConnectionError(), C.TRANSIENT),
        (ConnectionResetError(), C.TRANSIENT),
        (BrokenPipeError(), C.TRANSIENT),
        *[(HTTPStatusError(code), C.TRANSIENT) for code in (500, 502, 503, 504)],
        (HTTPStatusError(429), C.RATE_LIMIT),
        *[(HTTPStatusError(code), C.AUTH) for code in (401, 403)],
        *[(HTTPStatusError(code), C.VALIDATION) for code in (400, 422)],
        *[(HTTPStatusError(code), C.PERMANENT) for code in (404, 405, 409, 410)],
        (WithStatus(status_code=503), C.TRANSIENT),
        (WithStatus(status=429), C.RATE_LIMIT),
        (WithStatus(code="401"), C.AUTH),
        (WithStatus(code="ECONNRESET"), C.UNKNOWN),
        (ValueError(), C.PERMANENT),
        (TypeError(), C.PERMANENT),
        (KeyError(), C.PERMANENT),
        (PermissionError(), C.AUTH),
        (RuntimeError(), C.UNKNOWN),
        (Exception(), C.UNKNOWN),
    ],
)
def test_builtin_rules(exc: BaseException, expected: ErrorCategory) -> None:
    assert classify(exc) is expected


def test_circuit_open_error_is_transient() -> None:
    exc = seawall.CircuitOpenError("db", seawall.BreakerState.OPEN, 3.0)
    assert classify(exc) is C.TRANSIENT
    assert retry_after_hint(exc) == 3.0


def test_registered_type_beats_builtin_and_latest_wins() -> None:
    register_error_type(ValueError, C.VALIDATION)
    assert classify(ValueError()) is C.VALIDATION
    register_error_type(ValueError, "transient")
    assert classify(ValueError()) is C.TRANSIENT
    assert classify(TypeError()) is C.PERMANENT


def test_classifier_beats_type_and_latest_first() -> None:
    register_error_type(RuntimeError, C.AUTH)
    register_classifier(lambda e: C.RATE_LIMIT if "slow down" in str(e) else None)
    assert classify(RuntimeError("slow down")) is C.RATE_LIMIT
    assert classify(RuntimeError("other")) is C.AUTH  # None falls through
    register_classifier(lambda e: "permanent")
    assert classify(RuntimeError("slow down")) is C.PERMANENT


def test_raising_classifier_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    def broken(exc: BaseException) -> None:
        raise RuntimeError("classifier bug")

    register_classifier(broken)
    assert classify(ConnectionError()) is C.TRANSIENT
    assert "classifier" in caplog.text


def test_classifier_with_bad_result_is_ignored() -> None:
    register_classifier(lambda e: "nonsense")
    assert classify(TimeoutError()) is C.TRANSIENT


def test_odd_attributes_never_raise() -> None:
    class Weird(Exception):
        @property
        def status_code(self) -> int:
            raise RuntimeError("nope")

    assert classify(Weird()) is C.UNKNOWN


def test_bad_registrations() -> None:
    with pytest.raises(ValueError, match="'sometimes'"):
        register_error_type(ValueError, "sometimes")
    with pytest.raises(TypeError, match="exc_type"):
        register_error_type("ValueError", C.AUTH)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn"):
        register_classifier(42)  # type: ignore[arg-type]


def test_retry_after_hints() -> None:
    assert retry_after_hint(WithStatus(retry_after=2.5)) == 2.5
    assert retry_after_hint(HTTPStatusError(429, {"Retry-After": "7"})) == 7.0
    assert retry_after_hint(WithStatus(headers={"retry-after": "3"})) == 3.0
    date = email.utils.formatdate(1_000_060.0, usegmt=True)
    hint = retry_after_hint(HTTPStatusError(503, {"Retry-After": date}), now=lambda: 1_000_000.0)
    assert hint == pytest.approx(60.0)
    assert retry_after_hint(HTTPStatusError(503, {"Retry-After": "soon"})) is None
    assert retry_after_hint(ValueError()) is None


class _Plain(Exception):
    """No status attributes on the class: its category is remembered per class."""


class _WithStatusProperty(Exception):
    @property
    def status_code(self) -> int:
        return int(self.args[0])


def test_remembered_category_still_sees_instance_status() -> None:
    assert classify(_Plain()) is ErrorCategory.UNKNOWN  # now remembered for the class
    assert classify(_Plain()) is ErrorCategory.UNKNOWN
    with_status = _Plain()
    with_status.status_code = 503  # type: ignore[attr-defined]
    assert classify(with_status) is ErrorCategory.TRANSIENT
    response = type("Response", (), {"status_code": 429})()
    with_response = _Plain()
    with_response.response = response  # type: ignore[attr-defined]
    assert classify(with_response) is ErrorCategory.RATE_LIMIT
    assert classify(_Plain()) is ErrorCategory.UNKNOWN


def test_class_level_status_is_never_remembered_per_class() -> None:
    assert classify(_WithStatusProperty(503)) is ErrorCategory.TRANSIENT
    assert classify(_WithStatusProperty(404)) is ErrorCategory.PERMANENT
    assert classify(_WithStatusProperty(503)) is ErrorCategory.TRANSIENT


def test_registrations_replace_remembered_categories() -> None:
    assert classify(_Plain()) is ErrorCategory.UNKNOWN
    register_error_type(_Plain, ErrorCategory.AUTH)
    assert classify(_Plain()) is ErrorCategory.AUTH
    with_status = _Plain()
    with_status.status_code = 503  # type: ignore[attr-defined]
    assert classify(with_status) is ErrorCategory.AUTH  # a user type rule comes before status
    register_classifier(lambda exc: "rate_limit" if isinstance(exc, _Plain) else None)
    assert classify(_Plain()) is ErrorCategory.RATE_LIMIT
    clear_registrations()
    assert classify(_Plain()) is ErrorCategory.UNKNOWN
    assert classify(ConnectionError()) is ErrorCategory.TRANSIENT
