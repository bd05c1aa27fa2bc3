"""Adapters that put pybreaker breakers and tenacity retries into a seawall registry.

Services already using those libraries get the same metrics, traces and dashboards as seawall's
own primitives: `seawall.adapters.pybreaker.instrument_breaker(cb, name)` and
`seawall.adapters.tenacity.instrument_retrying(retrying, name)` register a stand-in that keeps the
counts exporters read at scrape time, and publish the span events. Each module imports its
library, so import the one you use.
"""

from __future__ import annotations

__all__: list[str] = []
