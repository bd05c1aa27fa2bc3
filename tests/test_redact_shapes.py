"""Real secret shapes, generated, in every position the aggregator keeps: none survives.

The shapes are the ones an adversarial run found passing `redact()` (issue 17): authorization,
cookie and session keys, Cookie and Set-Cookie headers, JWTs, PEM private keys (also JSON-escaped),
AWS keys, GitHub and Stripe tokens, Slack webhook URLs, `pw=` / `pass=` parameters, dict reprs,
bytes values and header pairs. Each is put in an error's message, a context value (text, bytes,
nested containers, an object's repr), a context key and the source; then the aggregator's recent
errors and stats, the /metrics exposition and a log line of the message are searched for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

import seawall
import seawall.prometheus as sp
from seawall.core import redact as redact_module
from seawall.core.logsafe import exception_text, log_value

ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "_-"


def chars(alphabet: str, size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=size, max_size=size)


# Each strategy draws (text holding the secret, the secret), the secret at least 10 characters.
secret_value = st.text(alphabet=ALNUM, min_size=10, max_size=30).map(lambda s: "Q" + s)


# Shapes that are a template around the drawn secret.
AROUND_SECRET = {
    "cookie": "Cookie: theme=dark; sid={}; lang=en",
    "set_cookie": "Set-Cookie: session={}; Path=/; HttpOnly",
    "pw": "GET /login?user=bob&pw={}&next=/",
    "pass": "GET /login?user=bob&pass={}",
    "bytes_repr": "{{'password': b'{}'}}",
}
# Tokens recognised by their prefix: (prefixes, alphabet and length of the rest, text around the token).
PREFIXED = {
    "aws_id": (["AKIA", "ASIA"], UPPER, 16, "using {} in us-east-1"),
    "github": (["ghp_", "gho_", "ghs_"], ALNUM, 36, "git clone https://x.example/r.git failed with {}"),
    "stripe": (["sk_live_", "rk_live_", "sk_test_"], ALNUM, 24, "stripe rejected {}"),
}
OTHER_SHAPES = ["context_key", "jwt", "pem", "pem_json", "aws_secret", "slack", "dict_repr", "header_pair"]


@st.composite
def shapes(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from([*AROUND_SECRET, *PREFIXED, *OTHER_SHAPES, "header_line"]))
    secret = draw(secret_value)
    if kind in AROUND_SECRET:
        return AROUND_SECRET[kind].format(secret), secret
    if kind in PREFIXED:
        prefixes, alphabet, size, around = PREFIXED[kind]
        value = draw(st.sampled_from(prefixes)) + draw(chars(alphabet, size))
        return around.format(value), value
    if kind == "context_key":
        key = draw(st.sampled_from(["authorization", "Authorization", "cookie", "session", "Session-Id"]))
        return f"{{'{key}': '{secret}'}}", secret
    if kind == "jwt":
        header = "eyJ" + draw(chars(B64URL, 20))
        payload = "eyJ" + draw(chars(B64URL, 30))
        signature = draw(chars(B64URL, 43))
        return f"{header}.{payload}.{signature}", payload
    if kind in ("pem", "pem_json"):
        label = draw(st.sampled_from(["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED "]))
        body = "\n".join(draw(chars(B64, 64)) for _ in range(3))
        pem = f"-----BEGIN {label}PRIVATE KEY-----\n{body}\n-----END {label}PRIVATE KEY-----\n"
        secret = body.split("\n")[1]
        return (json.dumps({"key": pem})[8:] if kind == "pem_json" else pem), secret
    if kind == "aws_secret":
        value = draw(chars(B64, 40))
        name = draw(st.sampled_from(["aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "SecretAccessKey"]))
        return f"{name}={value}", value
    if kind == "slack":
        path = f"T{draw(chars(UPPER, 8))}/B{draw(chars(UPPER, 8))}/{secret}"
        return f"POST https://hooks.slack.com/services/{path} timed out", secret
    if kind == "dict_repr":
        scheme = draw(st.sampled_from(["Token ", "Bearer ", "Basic ", ""]))
        return f"{{'Authorization': '{scheme}{secret}'}}", secret
    if kind == "header_pair":
        name = draw(st.sampled_from(["X-Api-Key", "Authorization", "Cookie", "x-auth-token"]))
        return f"[('Accept', 'json'), ('{name}', '{secret}')]", secret
    name = draw(st.sampled_from(["X-Api-Key", "Proxy-Authorization", "Cookie", "X-Session-Token"]))
    return f"{name}: {secret}", secret


class Shown:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Shown({self.text})"


# Where a shape's text goes: (name, how the context and source are built from it).
Placement = Callable[[str, str], tuple[str, str, dict[str, Any]]]
PLACEMENTS: dict[str, Placement] = {
    "message": lambda text, secret: (f"request failed: {text} (retry 2)", "app", {}),
    "context_text": lambda text, secret: ("boom", "app", {"detail": text}),
    "context_bytes": lambda text, secret: ("boom", "app", {"body": text.encode()}),
    "context_nested": lambda text, secret: ("boom", "app", {"req": {"meta": [1, {"raw": text}]}}),
    "context_tuple": lambda text, secret: ("boom", "app", {"attempt": (1, text)}),
    "context_repr": lambda text, secret: ("boom", "app", {"obj": Shown(text)}),
    "context_key": lambda text, secret: ("boom", "app", {text: 1}),
    "context_headers": lambda text, secret: (
        "boom",
        "app",
        {"headers": [("X-Api-Key", secret), ("Authorization", f"Bearer {secret}"), ("Cookie", secret)]},
    ),
    "context_secret_keys": lambda text, secret: (
        "boom",
        "app",
        {
            "http": {
                "Authorization": secret,
                "cookie": secret,
                "session": {"id": secret},
                "password": secret.encode(),
            }
        },
    ),
    "source": lambda text, secret: ("boom", text, {}),
}

PROFILE = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def build() -> tuple[seawall.Registry, CollectorRegistry]:
    registry = seawall.Registry()
    prom = CollectorRegistry()
    sp.instrument(prom, seawall_registry=registry)
    return registry, prom


REGISTRY, PROM = build()


@PROFILE
@given(shape=shapes(), where=st.sampled_from(sorted(PLACEMENTS)))
def test_no_generated_secret_survives_anywhere(shape: tuple[str, str], where: str) -> None:
    text, secret = shape
    message, source, context = PLACEMENTS[where](text, secret)
    errors = REGISTRY.errors
    exc = RuntimeError(message)
    errors.record(exc, source=source, context=context)
    served = json.dumps([errors.recent(1), errors.stats()], ensure_ascii=False)
    assert secret not in served, (where, text, served)
    assert all(secret not in key[0] for key in errors.totals()), (where, text)
    exposition = generate_latest(PROM).decode()
    assert secret not in exposition, (where, text)
    try:
        raise exc
    except RuntimeError as raised:
        logged = log_value(message) + exception_text(raised)
    assert secret not in logged, (where, text, logged)
    errors.clear()


def test_the_shapes_the_issue_lists_pass_as_written() -> None:
    """The issue's literal examples, once each, next to the generated ones."""
    for text, secret in [
        ("{'Authorization': 'Token x1y2z3w4v5'}", "x1y2z3w4v5"),
        ("{'password': b'hunter2hunter2'}", "hunter2hunter2"),
        ("[('X-Api-Key', 'k9k9k9k9k9')]", "k9k9k9k9k9"),
        ('"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkq\\n-----END PRIVATE KEY-----"', "MIIEvQIBADANBgkq"),
    ]:
        registry = seawall.Registry()
        registry.errors.record(RuntimeError(text), source=text, context={"v": text, text: 1})
        served = json.dumps([*registry.errors.recent(1), registry.errors.stats()])
        assert secret not in served, text


def test_every_secret_name_word_lets_the_name_rules_run() -> None:
    """The cheap word check before the name rules must cover every word the rules know."""
    words = [*redact_module._STRONG.split("|"), *redact_module._WEAK.split("|")]
    for word in words:
        literal = word.replace("[_-]?", "_").replace("[sz]", "z").replace("s?", "")
        assert any(key in literal for key in redact_module._KEY_WORDS), word


def test_a_task_failing_with_a_private_key_logs_no_key_body(caplog: pytest.LogCaptureFixture) -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"

    async def leak() -> None:
        raise RuntimeError(f"could not load {pem}")

    async def scenario() -> None:
        supervisor = seawall.Supervisor(registry=seawall.Registry())
        await supervisor.supervise("loader", leak, max_restarts=0).wait()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    critical = [record for record in caplog.records if record.levelno == logging.CRITICAL]
    assert critical, caplog.text
    assert body not in caplog.text
    assert "[REDACTED]" in critical[0].getMessage()
