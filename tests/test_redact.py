"""redact: one case per secret shape, and ordinary text untouched."""

from __future__ import annotations

import string
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall import redact
from seawall.core.redact import MASK


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


# -- every shape the docs promise, including the ones issue 9 found in the clear ---------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw@cache:6379/0", "redis://:[REDACTED]@cache:6379/0"),
        ("postgres://app:p@ss@db/x", "postgres://app:[REDACTED]@db/x"),
        ("GET /x?apiToken=abc&page=2", "GET /x?apiToken=[REDACTED]&page=2"),
        ("userPassword=hunter2", "userPassword=[REDACTED]"),
        ("dbpassword=hunter2", "dbpassword=[REDACTED]"),
        ("DB_PASSWORD=hunter2", "DB_PASSWORD=[REDACTED]"),
        ("q=password%3Dhunter2%26page%3D2", "q=password%3D[REDACTED]%26page%3D2"),
        ("Authorization%3A%20x", "Authorization%3A[REDACTED]"),  # URL-encoded header: masked whole
        ("sent Bearer ab", "sent Bearer [REDACTED]"),
        ("X-Api-Key: k3y", "X-Api-Key: [REDACTED]"),
        ("accessKey=AKIA1", "accessKey=[REDACTED]"),
        ('{"password": "correct horse battery"}', '{"password": "[REDACTED]"}'),
        ("{'client_secret': 'a b'}", "{'client_secret': '[REDACTED]'}"),
        ('{\\"token\\":\\"t0k\\"}', '{\\"token\\":\\"[REDACTED]\\"}'),
        ("TokenExpiredError: session over", "TokenExpiredError: session over"),
    ],
)
def test_promised_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_is_idempotent_and_linear_on_hostile_input() -> None:
    for text in ("x-" * 2048, "a://" * 1024, "password%3D" * 372, '\\"' * 2048, "Bearer " * 585):
        start = time.perf_counter()
        once = redact(text)
        assert time.perf_counter() - start < 0.5, text[:20]
        assert redact(once) == once


SECRET_CHARS = string.ascii_letters + string.digits + "-._~+"
secrets_ = st.text(alphabet=SECRET_CHARS, min_size=1, max_size=40)
# Words that are no secret shape themselves, so the text around a secret must come out unchanged.
words = st.lists(
    st.sampled_from(["error", "while", "calling", "db", "at", "retry", "GET", "/v1/x"]), max_size=4
)
secret_words = st.sampled_from(
    ["password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "credential"]
)
weak_words = st.sampled_from(["key", "sig", "signature", "auth"])
name_prefix = st.sampled_from(["", "user", "db", "api", "x-", "client_", "my.", "AWS"])
name_suffix = st.sampled_from(["", "_value", "2", "-hash"])
separators = st.sampled_from(["=", ": ", ":", " = ", "%3D", "%3d", "%3A"])
casing = st.sampled_from([str.lower, str.upper, str.title, lambda word: word])


@st.composite
def secret_names(draw: st.DrawFn) -> str:
    """A parameter name holding a secret word (anywhere) or a weak one (at its end)."""
    if draw(st.booleans()):
        word = draw(secret_words)
        name = draw(name_prefix) + draw(casing)(word) + draw(name_suffix)
    else:
        name = draw(name_prefix) + draw(casing)(draw(weak_words))
    return name


@st.composite
def shaped(draw: st.DrawFn) -> tuple[str, str, str]:
    """(text, the secret in it, what redact must turn the text into)."""
    secret = draw(secrets_)
    before = " ".join(draw(words))
    before = before + " " if before else ""
    after = draw(st.sampled_from(["", " retry", "&page=2", "%26page%3D2", "\nnext line", ";x"]))
    shape = draw(st.sampled_from(["param", "json", "url", "bearer", "header"]))
    if shape == "param":
        name, sep = draw(secret_names()), draw(separators)
        return f"{before}{name}{sep}{secret}{after}", secret, f"{before}{name}{sep}{MASK}{after}"
    if shape == "json":
        name = draw(secret_names())
        quote = draw(st.sampled_from(['"', "'", '\\"']))
        value = draw(st.text(alphabet=SECRET_CHARS + " ,;&", min_size=1, max_size=40))
        if not value.strip(" ,;&"):
            value = secret
        body = f"{{{quote}{name}{quote}: {quote}{value}{quote}}}"
        masked = f"{{{quote}{name}{quote}: {quote}{MASK}{quote}}}"
        return f"{before}{body}{after}", value, f"{before}{masked}{after}"
    if shape == "url":
        user = draw(st.sampled_from(["", "app", "bob.smith"]))
        scheme = draw(st.sampled_from(["redis", "postgres", "https", "amqp+ssl"]))
        host = "db.example:5432/app"
        text = f"{before}{scheme}://{user}:{secret}@{host}{after}"
        return text, secret, f"{before}{scheme}://{user}:{MASK}@{host}{after}"
    if shape == "bearer":
        scheme = draw(st.sampled_from(["Bearer", "bearer", "Basic", "BASIC"]))
        return f"{before}{scheme} {secret}{after}", secret, f"{before}{scheme} {MASK}{after}"
    header = draw(st.sampled_from(["Authorization", "proxy-authorization", "AUTHORIZATION"]))
    scheme = draw(st.sampled_from(["Bearer ", "Basic ", "Token ", ""]))
    return f"{before}{header}: {scheme}{secret}\nnext", secret, f"{before}{header}: {MASK}\nnext"


@settings(max_examples=600, deadline=None)
@given(shaped())
def test_a_secret_in_any_promised_shape_never_survives(case: tuple[str, str, str]) -> None:
    text, secret, expected = case
    assert redact(text) == expected, secret  # exact: the secret is masked, the rest untouched
