"""redact: one case per secret shape, and ordinary text untouched."""

from __future__ import annotations

import pytest

from seawall import redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcdef123456", "abcdef123456"),
        ('curl -H "Authorization: Basic dXNlcjpwYXNz"', "dXNlcjpwYXNz"),
        ("sent bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("https://bob:hunter2@db.example.com/x", "hunter2"),
        ("GET /x?api_key=abc123&page=2", "abc123"),
        ("GET /x?apikey=abc123", "abc123"),
        ("GET /x?access_token=zzz999", "zzz999"),
        ("?token=t0k3n&x=1", "t0k3n"),
        ("secret=shh", "shh"),
        ('{"password": "s3cr3t"}', "s3cr3t"),
        ("sig=deadbeef&x=1", "deadbeef"),
        ("signature=abcd1234", "abcd1234"),
        ("key 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
        ("token: QWxhZGRpbjpvcGVuIHNlc2FtZQ==QWxh", "QWxhZGRpbjpvcGVuIHNlc2FtZQ"),
    ],
)
def test_secrets_removed(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert "[REDACTED]" in out


def test_query_keeps_other_params() -> None:
    assert redact("GET /x?api_key=abc123&page=2") == "GET /x?api_key=[REDACTED]&page=2"


@pytest.mark.parametrize(
    "text",
    [
        "connection refused to host db:5432 after 3 tries",
        "KeyError: missing key foo",
        "invalid token provided",
        "https://example.com/path?page=2&sort=name",
        "timeout after 30.0s talking to payments",
    ],
)
def test_ordinary_text_untouched(text: str) -> None:
    assert redact(text) == text


def test_not_a_str() -> None:
    with pytest.raises(TypeError):
        redact(b"x")  # type: ignore[arg-type]
