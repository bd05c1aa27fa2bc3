"""HTTP-aware classification: which failures another attempt can help, and which trip a breaker.

A response with a transient status (`HttpPolicy.transient_statuses`) is raised inside the
pipeline as `UpstreamStatusError`, so the retry and the breaker decide on it as on any other
failure (its `status_code` makes `seawall.classify` call it transient or rate_limit, its
`response` carries the Retry-After header `retry_after_hint` reads). Every other answer, 4xx
included, is a healthy upstream's answer: returned as it is, never retried, never a breaker failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from seawall.breakers.machine import CircuitOpenError
from seawall.limits.timeout import CallTimeoutError

__all__ = ["RateLimitedResponse", "Target", "TransientFailure", "UpstreamStatusError"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class UpstreamStatusError(Exception):
    """An answer with a transient status, raised between the pipeline's stages. The caller never
    sees it: when the retries are over the pipeline returns `response` itself."""

    def __init__(self, response: Any, status_code: int) -> None:
        super().__init__(status_code)
        self.response = response
        self.status_code = status_code

    def __str__(self) -> str:
        return f"upstream answered {self.status_code}"


class TransientFailure:
    """`(exc) -> bool`: True for what another attempt may fix (transient statuses, seawall's
    timeouts and open breakers, and the connection and timeout errors each client library
    `include`s). One predicate for every client, equal to every other instance, so an httpx client
    and a requests session of one name share their retry and breakers."""

    __slots__ = ()
    _errors: ClassVar[tuple[type[BaseException], ...]] = (
        UpstreamStatusError,
        CallTimeoutError,
        CircuitOpenError,
    )

    @classmethod
    def include(cls, errors: tuple[type[BaseException], ...]) -> None:
        """Count `errors` (a client library's transport failures) as transient from now on."""
        cls._errors = tuple(dict.fromkeys((*cls._errors, *errors)))

    def __call__(self, exc: BaseException) -> bool:
        return isinstance(exc, self._errors)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TransientFailure)

    def __hash__(self) -> int:
        return hash(TransientFailure)

    def __repr__(self) -> str:
        return "TransientFailure()"


@dataclass(frozen=True)
class RateLimitedResponse:
    """`(exc) -> bool`: a 429, which the breaker ignores (the upstream is pacing us, not failing)."""

    def __call__(self, exc: BaseException) -> bool:
        return isinstance(exc, UpstreamStatusError) and exc.status_code == 429


class Target(NamedTuple):
    """Where one request goes: what the breaker key and the attempt spans are made of (a tuple:
    made per request)."""

    method: str
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, method: str, scheme: str, host: str, port: int | None) -> Target:
        """The default port filled in, scheme and host lower-cased, the method upper-cased."""
        scheme = scheme.lower()
        return cls(
            method.upper(), scheme, host.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme, 0)
        )

    @property
    def authority(self) -> str:
        """`scheme:host:port`: the breaker key of one upstream (no slashes, so the breaker's admin
        route can name it)."""
        return f"{self.scheme}:{self.host}:{self.port}"
