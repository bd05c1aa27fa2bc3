"""Strip secrets from free text before it is stored or shown (error messages, context values).

Error messages often echo URLs, headers and request parameters; the aggregator keeps recent
messages and the status page shows them, so anything shaped like a credential is masked first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

__all__ = ["MASK", "is_secret_name", "redact"]

MASK = "[REDACTED]"

# A parameter name is secret when it contains one of these words anywhere (`dbpassword`, `apiToken`,
# `client_secret`) ...
_STRONG = r"password|passwd|passphrase|pwd|secret|token|credential|api[_-]?key"
# ... or ends with one of these (`api_key`, `accessKey`, `x-amz-sig`), which are too common inside
# ordinary words to match anywhere.
_WEAK = r"keys?|sig|signature|auth"
_NAME = r"[A-Za-z0-9_.-]"
# Not `TokenError: expired`: exception class names are followed by a message, not a value.
_NOT_A_CLASS = r"(?<!error)(?<!exception)(?<!warning)"
_KEY = rf"(?<!{_NAME})(?:{_NAME}*(?:{_STRONG}){_NAME}*|{_NAME}*(?:{_WEAK})){_NOT_A_CLASS}"
# `=`, `:` and their URL-encoded forms, with the quotes JSON, Python reprs and escaped JSON put around.
_SEPARATOR = r"""\\?["']?\s*(?:[=:]|%3[Dd]|%3[Aa])\s*"""
_VALUE = (
    r"""(?:(\\?")(?!\[REDACTED\])[^"\\\r\n]+"""  # "a quoted value, spaces and all"
    r"""|(')(?!\[REDACTED\])[^'\r\n]+"""
    r"""|()(?!\[REDACTED\])(?:(?!%26|%22)[^\s&"',;}<>\\])+)"""  # up to a delimiter (or an encoded &)
)


def _mask_value(match: re.Match[str]) -> str:
    quote = match.group(2) or match.group(3) or ""
    return f"{match.group(1)}{quote}{MASK}"


_Replacement = str | Callable[[re.Match[str]], str]

# (words one of which the lowercased text must contain for the rule to apply, rule, replacement).
# The word check is a substring search, far cheaper than running each pattern over every message.
# Order matters: header values first (they may contain "Bearer x"), then the narrower shapes.
_RULES: tuple[tuple[tuple[str, ...], re.Pattern[str], _Replacement], ...] = (
    # Authorization / Proxy-Authorization header values, up to the end of the line or a quote.
    (
        ("authorization",),
        re.compile(r"(?i)\b((?:proxy-)?authorization\s*[:=]\s*)[^\r\n\"',;}]+"),
        r"\1" + MASK,
    ),
    # Bearer / Basic credentials anywhere, however short.
    (
        ("bearer", "basic"),
        re.compile(r"(?i)\b(bearer|basic)(\s+)(?!\[REDACTED\])[A-Za-z0-9._~+/=-]+"),
        r"\1\2" + MASK,
    ),
    # scheme://user:password@host, the user possibly empty (redis://:password@host).
    # The scheme starts where no scheme character precedes it (not at every `\b`: quadratic).
    (
        ("://",),
        re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,31}://[^\s:/@]*:)[^\s/?#]+@"),
        r"\1" + MASK + "@",
    ),
    # key=value, key: value, "key": "value", key%3Dvalue for secret-looking keys.
    (
        ("pass", "pwd", "secret", "token", "credential", "key", "sig", "auth"),
        re.compile(rf"(?i)({_KEY}{_SEPARATOR}){_VALUE}"),
        _mask_value,
    ),
    # long hex / base64-looking strings right after a token/key word ("key abcdef0123...").
    (
        ("token", "key", "secret"),
        re.compile(r"(?i)\b((?:token|key|secret)s?\b\W{0,3})[A-Za-z0-9+/_=-]{20,}"),
        r"\1" + MASK,
    ),
)


_SECRET_NAME = re.compile(rf"(?i)(?:{_STRONG})|(?:{_WEAK})$")


@functools.lru_cache(maxsize=4096)  # field names repeat: the regex runs once per distinct name
def is_secret_name(name: str) -> bool:
    """Whether a field called `name` holds a secret (`password`, `dbPassword`, `api_key`, `X-Auth`)."""
    return _SECRET_NAME.search(name) is not None


def redact(text: str) -> str:
    """Return `text` with credentials replaced by `[REDACTED]`; ordinary text is left as it is."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    lowered = text.lower()
    for words, pattern, replacement in _RULES:
        for word in words:  # a plain loop: cheaper than any() over a generator, or one big regex
            if word in lowered:
                text = pattern.sub(replacement, text)
                break
    return text
