"""JSON bodies that can always be encoded, whatever text a client or a caller put in them.

Python strings may hold lone surrogates (JSON's `"\\ud800"` decodes to one, and a name or a
context value may carry it): `str.encode("utf-8")` raises on them, which turned answers into 500s.
Entry points scrub what they keep (`seawall.core.scrub`); this is the last line: a lone surrogate
that still reaches a body is written as `?` instead of failing the response.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse as _StarletteJSON

__all__ = ["JSONResponse", "dumps"]


def dumps(data: Any) -> bytes:
    """Compact JSON as UTF-8; never raises on text (lone surrogates become `?`); no NaN/Infinity."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", "replace")


class JSONResponse(_StarletteJSON):
    """Starlette's JSONResponse whose body is rendered by `dumps`."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
