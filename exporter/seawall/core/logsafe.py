"""Values made safe to put in a log line: secrets masked, control characters escaped, length bounded.

A name from a URL, a header or an exception's message may hold CR/LF (which would forge a log
line), ANSI escapes (which rewrite a terminal) or a credential. Every value seawall logs that a
user or a downstream supplied goes through `log_value`; exceptions through `exception_text`.
"""

from __future__ import annotations

import re
import traceback

from seawall.core.redact import redact

__all__ = ["escape", "exception_text", "log_value"]

LOG_VALUE_LIMIT = 200

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators some viewers break on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape(text: str) -> str:
    """`text` with every control character written as a visible escape (`\\n`, `\\x1b`, ...)."""
    return _CONTROL.sub(_escape_one, text)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def log_value(value: object, limit: int = LOG_VALUE_LIMIT) -> str:
    """One value for a log line: redacted, escaped, at most `limit` characters (then `...`)."""
    text = _text(value)
    if len(text) > 4 * limit:
        text = text[: 4 * limit]  # bound the regex work before redacting
    text = escape(redact(text))
    return text if len(text) <= limit else text[:limit] + "..."


_CHAIN_LIMIT = 8


def exception_text(exc: BaseException) -> str:
    """A traceback for the log whose exception messages are redacted and escaped.

    The frames keep their lines (files, line numbers, source), redacted; the messages, which a
    downstream wrote, are redacted and escaped to one line. Causes and contexts follow, at most 8.
    """
    blocks: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(blocks) < _CHAIN_LIMIT:
        seen.add(id(current))
        frames = redact("".join(traceback.format_tb(current.__traceback__)))
        head = "Traceback (most recent call last):\n" if frames else ""
        blocks.append(f"{head}{frames}{type(current).__qualname__}: {log_value(current, 1000)}")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\ncaused by (or raised while handling):\n".join(blocks)
