"""Strip secrets from free text before it is stored or shown (error messages, context values).

Error messages often echo URLs, headers and request parameters; the aggregator keeps recent
messages and the status page shows them, so anything shaped like a credential is masked first.
"""

from __future__ import annotations

import re

MASK = "[REDACTED]"

_SECRET_KEYS = (
    r"api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|auth[_-]?token|client[_-]?secret"
    r"|token|secret|password|passwd|pwd|key|sig|signature"
)

# Order matters: header values first (they may contain "Bearer x"), then the narrower shapes.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization / Proxy-Authorization header values, up to the end of the line or a quote.
    (re.compile(r"(?i)\b((?:proxy-)?authorization\s*[:=]\s*)[^\r\n\"',;}]+"), r"\1" + MASK),
    # Bearer / Basic / Token credentials anywhere.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2" + MASK),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@"), r"\1" + MASK + "@"),
    # key=value, key: value, "key": "value" for secret-looking keys (query strings, JSON, form data).
    (
        re.compile(
            r"(?i)((?<![A-Za-z0-9])[\"']?(?:" + _SECRET_KEYS + r")[\"']?\s*[=:]\s*[\"']?)"
            r"(?!\[REDACTED\])[^\s&\"',;}]+"
        ),
        r"\1" + MASK,
    ),
    # long hex / base64-looking strings right after a token/key word ("key abcdef0123...").
    (
        re.compile(r"(?i)\b((?:token|key|secret)s?\b\W{0,3})[A-Za-z0-9+/_=-]{20,}"),
        r"\1" + MASK,
    ),
)


def redact(text: str) -> str:
    """Return `text` with credentials replaced by `[REDACTED]`; ordinary text is left as it is."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
