"""One exposition path for /metrics: text 0.0.4 or OpenMetrics, gzip when asked, for any registry.

seawall's families (`Family`) are written straight from the numbers the collector read from the
primitives; any other collector's families in the same registry go through prometheus_client's
own encoders unchanged, in registry order. The text and OpenMetrics writers share one loop, so an
OpenMetrics scrape (what Prometheus asks for) costs what a text one does.

Only public prometheus_client names are used: `Metric`, `Sample`, `Exemplar`, the two
`generate_latest` encoders and their content types. `Family.samples` builds prometheus_client
`Sample`s only when something other than this module reads them (`get_sample_value`,
prometheus_client's own encoders), and what they encode is byte for byte what `render` writes
(tested on the oldest and newest admitted prometheus-client).
"""

from __future__ import annotations

import functools
import gzip
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client import generate_latest as _text_encoder
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as _openmetrics_encoder
from prometheus_client.samples import Exemplar, Sample

from seawall.core.snapshots import HistogramSnapshot

__all__ = [
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "Family",
    "generate_latest",
    "generate_openmetrics",
    "negotiate",
    "render",
]

TEXT_CONTENT_TYPE = CONTENT_TYPE_LATEST
_EOF = "# EOF\n"
_OPENMETRICS = "application/openmetrics-text"
_OPENMETRICS_VERSIONS = (None, "0.0.1", "1.0.0")
LABEL_CACHE_SIZE = 100_000  # label strings kept between scrapes (~25 per breaker)
GZIP_LEVEL = 1  # Prometheus always asks for gzip; level 1 is ~5x faster than 9 and ~10% larger here

# (trace_id, span_id, observed value) of the last sampled call in a bucket.
ExemplarIds = tuple[str, str, float]


def go_float(value: float) -> str:
    """A float as Prometheus' Go parser writes it: Inf/NaN spelled out, exponent past 1e6."""
    if value.is_integer() and -1e6 < value < 1e6:  # counts: the common case, one format
        return f"{int(value)}.0"
    if value != value:
        return "NaN"
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    text = repr(float(value))
    digits = text.find(".")
    if value > 0 and digits > 6:  # 1234567.0 -> 1.234567e+06
        mantissa = (text[0] + "." + text[1:digits] + text[digits + 1 :]).rstrip("0").rstrip(".")
        return f"{mantissa}e+0{digits - 1}"
    return text


def _escape_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


@functools.lru_cache(maxsize=LABEL_CACHE_SIZE)
def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """`{a="x",b="y"}` with the labels sorted by name, as both formats require. Cached: a series'
    labels are the same at every scrape, and formatting them is most of a line's cost."""
    pairs = sorted(zip(names, values, strict=True))
    return "{" + ",".join(f'{name}="{_escape_value(value)}"' for name, value in pairs) + "}"


class Family(Metric):
    """One seawall metric family: rows of (label values, value), or of (label values, histogram,
    exemplars by bucket index) for histograms. Rendered directly; `samples` made on demand."""

    def __init__(self, name: str, documentation: str, typ: str, labelnames: Sequence[str]) -> None:
        self._built: list[Any] | None = None
        super().__init__(name, documentation, typ)
        self.labelnames = tuple(labelnames)
        self.rows: list[tuple[tuple[str, ...], float]] = []
        self.histograms: list[tuple[tuple[str, ...], HistogramSnapshot, dict[int, ExemplarIds] | None]] = []

    @property
    def samples(self) -> list[Any]:
        if self._built is None:
            self._built = list(self._samples())
        return self._built

    @samples.setter
    def samples(self, value: list[Any]) -> None:  # Metric.__init__ assigns []
        self._built = value or None

    def _samples(self) -> Iterable[Any]:
        names = self.labelnames
        if self.type == "histogram":
            for values, hist, exemplars in self.histograms:
                base = dict(zip(names, values, strict=True))
                for index, (bound, cumulative) in enumerate(_cumulative(hist)):
                    exemplar = None
                    if exemplars and index in exemplars:
                        trace_id, span_id, observed = exemplars[index]
                        exemplar = Exemplar({"trace_id": trace_id, "span_id": span_id}, observed)
                    labels = {**base, "le": bound}
                    yield Sample(self.name + "_bucket", labels, cumulative, None, exemplar)
                yield Sample(self.name + "_count", base, float(hist.count), None, None)
                yield Sample(self.name + "_sum", base, hist.sum, None, None)
            return
        sample_name = self.name + "_total" if self.type == "counter" else self.name
        for values, value in self.rows:
            yield Sample(sample_name, dict(zip(names, values, strict=True)), float(value), None, None)

    def write(self, out: list[str], openmetrics: bool) -> None:
        name, typ = self.name, self.type
        doc = self.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        if openmetrics:
            doc = doc.replace('"', '\\"')
            out.append(f"# HELP {name} {doc}\n# TYPE {name} {typ}\n")
        else:
            shown = name + "_total" if typ == "counter" else name
            out.append(f"# HELP {shown} {doc}\n# TYPE {shown} {typ}\n")
        names = self.labelnames
        if typ != "histogram":
            sample_name = name + "_total" if typ == "counter" else name
            for values, value in self.rows:
                out.append(f"{sample_name}{_labels(names, values)} {go_float(float(value))}\n")
            return
        bucket_names = (*names, "le")
        for values, hist, exemplars in self.histograms:
            labels = _labels(names, values)
            for index, (bound, cumulative) in enumerate(_cumulative(hist)):
                line = f"{name}_bucket{_labels(bucket_names, (*values, bound))} {go_float(cumulative)}"
                if openmetrics and exemplars and index in exemplars:
                    trace_id, span_id, observed = exemplars[index]
                    line += f' # {{span_id="{span_id}",trace_id="{trace_id}"}} {go_float(observed)}'
                out.append(line + "\n")
            out.append(f"{name}_count{labels} {go_float(float(hist.count))}\n")
            out.append(f"{name}_sum{labels} {go_float(hist.sum)}\n")


@functools.lru_cache(maxsize=64)
def _le_values(bounds: tuple[float, ...]) -> tuple[str, ...]:
    return (*(go_float(bound) for bound in bounds), "+Inf")


def _cumulative(hist: HistogramSnapshot) -> Iterable[tuple[str, float]]:
    """(le, cumulative count) per bucket, +Inf last."""
    for le, (_bound, count) in zip(_le_values(hist.bounds), hist.cumulative(), strict=True):
        yield le, float(count)


class _Families:
    """A stand-in collector over families already collected (prometheus_client calls `collect`)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _generate(registry: Any, openmetrics: bool) -> bytes:
    out: list[str] = []
    foreign: list[Metric] = []

    def flush() -> None:
        if not foreign:
            return
        if openmetrics:
            chunk = _openmetrics_encoder(_Families(foreign)).decode()  # type: ignore[no-untyped-call]
            out.append(chunk[: -len(_EOF)] if chunk.endswith(_EOF) else chunk)
        else:
            out.append(_text_encoder(_Families(foreign)).decode())
        foreign.clear()

    for family in registry.collect():
        if isinstance(family, Family):
            flush()
            family.write(out, openmetrics)
        else:
            foreign.append(family)
    flush()
    if openmetrics:
        out.append(_EOF)
    return "".join(out).encode("utf-8")


def generate_latest(registry: Any = REGISTRY) -> bytes:
    """The Prometheus text format (0.0.4) of `registry`; a drop-in for prometheus_client's."""
    return _generate(registry, openmetrics=False)


def generate_openmetrics(registry: Any = REGISTRY) -> bytes:
    """The OpenMetrics text format of `registry` (with exemplars)."""
    return _generate(registry, openmetrics=True)


def _ranges(header: str) -> Iterator[tuple[str, float | None, dict[str, str]]]:
    """(lowercased name, q or None when malformed, other parameters) per comma-separated item of an
    `Accept` or `Accept-Encoding` header."""
    for item in header.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        quality: float | None = 1.0
        others: dict[str, str] = {}
        for param in params:
            key, _, value = param.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if key != "q":
                others[key] = value
                continue
            try:
                quality = float(value)
            except ValueError:
                quality = None
        yield name.lower(), quality, others


def negotiate(accept: str | None) -> bool:
    """True when the `Accept` header prefers OpenMetrics (1.0.0 or 0.0.1, q > 0).

    Lenient by design: a malformed or unknown media range (a bad version, a broken q) is skipped
    and the text format answers, since a scraper's odd header is no reason to fail a scrape.
    """
    if not accept:
        return False
    best_openmetrics = best_text = -1.0
    for position, (media, quality, params) in enumerate(_ranges(accept)):
        if quality is None or not 0.0 < quality <= 1.0:
            continue
        rank = quality - position * 1e-6  # earlier ranges win ties
        if media == _OPENMETRICS and params.get("version") in _OPENMETRICS_VERSIONS:
            best_openmetrics = max(best_openmetrics, rank)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, rank)
    return best_openmetrics >= 0 and best_openmetrics >= best_text


def wants_gzip(accept_encoding: str | None) -> bool:
    """True when `Accept-Encoding` lists gzip with q > 0 (Prometheus sends `gzip`)."""
    if not accept_encoding:
        return False
    for name, quality, _ in _ranges(accept_encoding):
        if name == "gzip":
            return quality is not None and quality > 0
    return False


def render(
    registry: Any = REGISTRY, accept: str | None = None, accept_encoding: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and response headers for a /metrics request with these `Accept` and `Accept-Encoding`
    headers: OpenMetrics when the scraper prefers it (as Prometheus does), else text; gzip when
    accepted. What the Starlette route serves."""
    if negotiate(accept):
        body, content_type = generate_openmetrics(registry), OPENMETRICS_CONTENT_TYPE
    else:
        body, content_type = generate_latest(registry), TEXT_CONTENT_TYPE
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if wants_gzip(accept_encoding):
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        headers["Content-Encoding"] = "gzip"
    return body, headers
