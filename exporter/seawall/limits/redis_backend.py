"""`RedisBackend`: one rate limit shared by every worker and host of a service.

Each decision is one Lua script run atomically by Redis (EVALSHA, loaded once): it reads the
limit's theoretical arrival time, decides, and writes it back, so there is no read-modify-write
race between processes. The script takes `now` from the server's own clock (`TIME`), so hosts
whose clocks disagree still share one budget. The key expires when the bucket would be full
again, so idle limits cost no memory.

Bounded failure: the client is built with `timeout` seconds for connecting and for each reply,
and with redis-py's own retries off, so a decision never waits longer than that. After a failure
the backend is not asked again for `recheck` seconds (every decision in between fails at once,
without a round trip), so a server that hangs costs one timeout per `recheck`, not one per call.
What the limiter does then is its `failure_policy`.

The `redis` package is imported here only, when a backend is made (extra `seawall[redis]`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from seawall.core.settings import MAX_COUNT, Number, check_duration
from seawall.limits.leased import Lease
from seawall.limits.ratelimit import EPSILON, BackendUnavailable

__all__ = ["GCRA_SCRIPT", "LEASE_SCRIPT", "RedisBackend"]

# Both scripts read the limit's `tat` by the server's clock. KEYS[1]: the limit's key.
# ARGV: interval, tolerance (seconds), a third argument of their own, epsilon.
_GCRA_READ = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local epsilon = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local function store(new_tat)
  redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1)
end
"""

# ARGV[3]: max_wait. Returns {1, wait} when admitted (wait: seconds until the reserved slot) or
# {0, retry_after}.
GCRA_SCRIPT = (
    _GCRA_READ
    + """
local wait = tat - tolerance - now
if wait > tonumber(ARGV[3]) + epsilon then
  return {0, string.format('%.6f', wait)}
end
store(tat + interval)
if wait < 0 then wait = 0 end
return {1, string.format('%.6f', wait)}
"""
)

# Leased tokens (limits/leased.py). ARGV[3]: tokens wanted. Returns {granted, retry_after}:
# granted >= 1 slots taken now, or 0 and the exact wait for the next one.
LEASE_SCRIPT = (
    _GCRA_READ
    + """
local free = math.floor((tolerance - (tat - now)) / interval + epsilon) + 1
if free < 1 then
  return {0, string.format('%.6f', tat - tolerance - now)}
end
local granted = math.min(tonumber(ARGV[3]), free)
store(tat + granted * interval)
return {granted, '0'}
"""
)


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("RedisBackend needs the redis package: pip install 'seawall[redis]'") from exc
    return redis


class RedisBackend:
    """Shared rate-limit state in Redis, for `RateLimiter(..., backend=RedisBackend(url))`.

    `url` (redis://host:port/db, rediss:// for TLS), `prefix` for the keys (`<prefix><limiter
    name>`), `timeout` seconds per connect and per reply, `recheck` seconds between tries while
    the server is failing. Give `client=` / `async_client=` to reuse your own redis-py clients
    (then their timeouts and retries are yours: set them, or a decision can outlive `timeout`).
    One backend serves any number of limiters.
    """

    kind = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "seawall:ratelimit:",
        timeout: float = 0.1,
        recheck: float = 1.0,
        exact: bool = False,
        lease: float = 0.05,
        max_batch: int = 16,
        lease_ttl: float = 0.5,
        breaker_prefix: str = "seawall:breaker:",
        sync_interval: float = 0.05,
        client: Any = None,
        async_client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"url must be a redis:// or rediss:// URL, got {url!r}")
        for field, text in (("prefix", prefix), ("breaker_prefix", breaker_prefix)):
            if not isinstance(text, str):
                raise TypeError(f"{field} must be a str, got {text!r}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        self.url = url
        self.prefix = prefix
        self.timeout = check_duration("timeout", timeout)
        self.recheck = check_duration("recheck", recheck, zero=True)
        if not isinstance(exact, bool):
            raise TypeError(f"exact must be a bool, got {exact!r}")
        Number(1, MAX_COUNT, integer=True).check("max_batch", max_batch)
        self.exact = exact
        self.lease = check_duration("lease", lease)
        self.max_batch = max_batch
        self.lease_ttl = check_duration("lease_ttl", lease_ttl)
        self._leases: dict[str, Lease] = {}
        self.breaker_prefix = breaker_prefix
        self.sync_interval = check_duration("sync_interval", sync_interval)
        self.fleet: Any = None  # the shared breakers' sync thread (breakers/shared.py), on first use
        self._clock = clock
        self._redis = _import_redis()
        self._client = client
        self._script: Any = None
        self._async_client = async_client
        self._async_scripts: dict[asyncio.AbstractEventLoop, dict[str, Any]] = {}
        self._lease_script: Any = None
        self._down_until = -1.0
        self._last_error = ""

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r}, prefix={self.prefix!r})"

    def _options(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry_on_timeout": False,
            "health_check_interval": 0,
        }

    def client(self) -> Any:
        """The sync redis-py client (made on first use, bounded by `timeout`, no retries)."""
        if self._client is None:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self._client = self._redis.Redis.from_url(
                self.url, retry=Retry(NoBackoff(), 0), **self._options()
            )
        return self._client

    def _sync_script(self) -> Any:
        if self._script is None:
            self._script = self.client().register_script(GCRA_SCRIPT)
        return self._script

    def _loop_script(self, text: str = GCRA_SCRIPT) -> Any:
        """The async script of the running loop (redis.asyncio connections belong to one loop)."""
        loop = asyncio.get_running_loop()
        scripts = self._async_scripts.get(loop)
        if scripts is None:
            client = self._async_client
            if client is None:
                from redis.asyncio import Redis
                from redis.asyncio.retry import Retry
                from redis.backoff import NoBackoff

                client = Redis.from_url(self.url, retry=Retry(NoBackoff(), 0), **self._options())
            for old in [known for known in self._async_scripts if known.is_closed()]:
                del self._async_scripts[old]
            scripts = self._async_scripts[loop] = {"": client}
        script = scripts.get(text)
        if script is None:
            script = scripts[text] = scripts[""].register_script(text)
        return script

    def _args(self, interval: float, tolerance: float, max_wait: float) -> list[str]:
        return [repr(interval), repr(tolerance), repr(max_wait), repr(EPSILON)]

    def _check_cooling(self) -> None:
        """Fail at once while a recent failure's `recheck` interval runs."""
        left = self._down_until - self._clock()
        if left > 0.0:
            raise BackendUnavailable(self._last_error, left)

    def _failed(self, exc: BaseException) -> BackendUnavailable:
        self._last_error = type(exc).__name__
        self._down_until = self._clock() + self.recheck
        return BackendUnavailable(self._last_error, self.recheck or None)

    @staticmethod
    def _decision(reply: Any) -> tuple[bool, float]:
        admitted, value = reply
        return int(admitted) == 1, float(value)

    def take(self, key: str, interval: float, tolerance: float, max_wait: float) -> tuple[bool, float]:
        """A decision for the limit `key`: a held token, else a lease (or an exact decision)."""
        lease, decided = self._without_redis(key, max_wait)
        if decided is not None:
            return decided
        try:
            if lease is not None:
                decided = lease.refill(lambda n: self._take_batch(key, interval, tolerance, n))
                if self._settled(decided, max_wait):
                    return decided
            reply = self._sync_script()(
                keys=[self.prefix + key], args=self._args(interval, tolerance, max_wait)
            )
            return self._decision(reply)
        except Exception as exc:
            raise self._failed(exc) from exc

    async def take_async(
        self, key: str, interval: float, tolerance: float, max_wait: float
    ) -> tuple[bool, float]:
        lease, decided = self._without_redis(key, max_wait)
        if decided is not None:
            return decided
        try:
            if lease is not None:
                decided = await lease.refill_async(
                    lambda n: self._take_batch_async(key, interval, tolerance, n)
                )
                if self._settled(decided, max_wait):
                    return decided
            script = self._loop_script()
            reply = await script(keys=[self.prefix + key], args=self._args(interval, tolerance, max_wait))
            return self._decision(reply)
        except Exception as exc:
            raise self._failed(exc) from exc

    def _without_redis(self, key: str, max_wait: float) -> tuple[Lease | None, tuple[bool, float] | None]:
        """The lease (None in exact mode) and what it decides alone: a held token, or a refusal
        whose retry_after is still ahead; then fail at once while Redis is cooling off."""
        lease = None if self.exact else self._lease_of(key)
        if lease is not None:
            if lease.spend():
                return lease, (True, 0.0)
            wait = lease.refused(max_wait)
            if wait is not None:
                return lease, (False, wait)
        self._check_cooling()
        return lease, None

    @staticmethod
    def _settled(decided: tuple[bool, float], max_wait: float) -> bool:
        """A lease's answer is final unless it refused a call that may wait for the next slot
        (then an exact reservation decides)."""
        admitted, retry_after = decided
        return admitted or max_wait <= 0.0 or retry_after > max_wait + EPSILON

    # -- leased tokens (limits/leased.py) -------------------------------------------------------

    def _lease_of(self, key: str) -> Lease:
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases.setdefault(
                key, Lease(self.lease, self.max_batch, self.lease_ttl, self._clock)
            )
        return lease

    def _batch_args(self, interval: float, tolerance: float, wanted: int) -> list[str]:
        return [repr(interval), repr(tolerance), str(wanted), repr(EPSILON)]

    @staticmethod
    def _granted(reply: Any) -> tuple[int, float]:
        granted, value = reply
        return int(granted), float(value)

    def _take_batch(self, key: str, interval: float, tolerance: float, wanted: int) -> tuple[int, float]:
        if self._lease_script is None:
            self._lease_script = self.client().register_script(LEASE_SCRIPT)
        reply = self._lease_script(
            keys=[self.prefix + key], args=self._batch_args(interval, tolerance, wanted)
        )
        return self._granted(reply)

    async def _take_batch_async(
        self, key: str, interval: float, tolerance: float, wanted: int
    ) -> tuple[int, float]:
        script = self._loop_script(LEASE_SCRIPT)
        reply = await script(keys=[self.prefix + key], args=self._batch_args(interval, tolerance, wanted))
        return self._granted(reply)

    def ping(self) -> bool:
        """True when the server answers within `timeout` (for readiness checks; connects the
        sync client)."""
        try:
            self._sync_script()
            return bool(self._client.ping())
        except Exception:
            return False

    def close(self) -> None:
        """Stop the shared breakers' sync thread and close the sync client's connections."""
        if self.fleet is not None:
            self.fleet.close()
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close the running loop's async client (call it before the loop ends)."""
        scripts = self._async_scripts.pop(asyncio.get_running_loop(), None)
        if scripts is not None:
            await scripts[""].aclose()
