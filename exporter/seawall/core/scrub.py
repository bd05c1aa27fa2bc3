"""Caller- and downstream-supplied text made safe to keep: valid Unicode, secrets masked, bounded.

The error aggregator keeps messages, sources and context values; each may be served as JSON,
become a Prometheus label or reach a log line. A lone surrogate (`"\\ud800"`, which JSON and
Python both let in) cannot be encoded as UTF-8, so it would turn every later answer that carries
it into a 500: it is replaced by U+FFFD here, where the text enters. Secrets are masked here too
(`redact`), so what is kept is already clean, whoever reads it later.

Clean text repeats (the same failure recurs), and the redaction rules cost microseconds: a bounded
memo remembers text that came out unchanged, so a repeated clean message costs a dict lookup.
Text that held a secret is never remembered (the memo holds no secret).

Most messages never recur as they are: they carry ids (`connection to db-7 refused, request
55433`). A second memo remembers the *shape* of clean text, its digits read as `0`: the rules treat
every digit alike except in `%3D`, `%26`, `%22` and `A3T` (URL-encoded separators, an AWS key
prefix), so ASCII text without `%` and `A3` is clean exactly when any text of its shape is. A new
message of a known shape then costs a byte translation and a lookup, not the rules' word scan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from seawall.core.redact import MASK, is_secret_name, redact

__all__ = ["CLEAN", "OTHER", "SHAPES", "clean_structure", "scrub", "valid_text"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_MEMO_SIZE = 4096
_MEMO_TEXT = 200
CLEAN: dict[str, None] = {}
SHAPES: dict[bytes, None] = {}
_ZERO = bytes.maketrans(b"0123456789", b"0000000000")
# The only text in which the rules tell one digit from another (tests/test_scrub.py reads the rules):
# `%` (`%3D`, `%26`, `%22`), which the translation keeps, so a shape holding it is never stored; and
# `A3` (`A3T`), which the translation loses, so a text holding it is never answered by its shape
# (storing one is safe: a clean `A3` text's siblings hold no `A3T`, so they are clean too).
_ENCODED, _AWS = "%", "A3"
_ENCODED_BYTE = _ENCODED.encode()
SHAPE_UNSAFE = (_ENCODED, _AWS)


def valid_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so it can be encoded as UTF-8."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def scrub(text: str, limit: int) -> str:
    """`text` cut to `4 * limit` characters (bounding the work), made valid, redacted, cut to `limit`.

    Callers on a hot path whose limit is at least 200 may skip the call for `text in CLEAN`: the
    memo holds only text of at most 200 characters that came out unchanged.
    """
    if text in CLEAN:
        return text[:limit]
    size = len(text)
    memo = size <= limit and size <= _MEMO_TEXT
    shape = None
    if memo and text.isascii():
        raw = text.encode()
        shape = raw.translate(_ZERO)
        if shape in SHAPES and _AWS not in text:
            return text  # a clean text of this shape was seen: this one is clean too
        if shape == raw:  # no digit: the memo of texts already says all a shape could
            shape = None
    cut = text if len(text) <= 4 * limit else text[: 4 * limit]
    clean = redact(valid_text(cut))
    if memo and clean == text:  # nothing secret: safe to remember
        _remember(CLEAN, text)
        if shape is not None and _ENCODED_BYTE not in shape:
            _remember(SHAPES, shape)
    return clean[:limit]


def _remember(memo: dict[Any, None], key: Any) -> None:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo[key] = None


OTHER = object()  # what clean_structure returns for a value it does not know how to copy
MAX_DEPTH = 4
MAX_ITEMS = 50  # leaves and containers in one structure, all levels together
_INT_BOUND = 2**63


def clean_structure(value: Any, limit: int) -> Any:
    """A JSON-ready copy of a context value: strings and bytes scrubbed, numbers and None kept,
    mappings and sequences walked (50 items in all, 4 levels), the value under a secret-looking
    key, or the second item of a `(secret_name, value)` pair (a header list), masked whole.
    Anything else is `OTHER`: the caller shows it as a scrubbed repr."""
    budget = [MAX_ITEMS]
    return _walk(value, limit, 0, budget)


def _walk(value: Any, limit: int, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # str() of an int past 4,300 digits raises, so JSON could not serve it.
        return value if -_INT_BOUND <= value < _INT_BOUND else f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, str):
        return scrub(value, limit)
    if isinstance(value, (bytes, bytearray)):
        return scrub(bytes(value[: 4 * limit]).decode("utf-8", "replace"), limit)
    if depth >= MAX_DEPTH or budget[0] <= 0:
        return f"<{type(value).__name__}>"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if budget[0] <= 0:
                out["..."] = "..."
                break
            name = scrub(key if isinstance(key, str) else str(_walk(key, limit, depth + 1, budget)), limit)
            out[name] = MASK if is_secret_name(name) else _walk(item, limit, depth + 1, budget)
        return out
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], (str, bytes)):
            first = value[0] if isinstance(value[0], str) else value[0].decode("utf-8", "replace")
            if is_secret_name(first):
                return [scrub(first, limit), MASK]
        items = []
        for item in value:
            if budget[0] <= 0:
                items.append("...")
                break
            items.append(_walk(item, limit, depth + 1, budget))
        return items
    return OTHER
