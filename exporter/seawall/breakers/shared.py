"""One breaker state for every worker of a fleet, kept in Redis and synced in the background.

A breaker given `shared=RedisBackend(url)` still decides every call locally (no round trip on
any call path). What is shared is synced by one daemon thread per backend (`FleetSync`), every
`sync_interval` seconds and at once when the local breaker changes state:

- a local transition (tripped by failures or rates, a failed or successful probe, a manual
  `force_open` / `disable` / `reset`) is published to the fleet's state hash;
- the fleet's state is adopted when it changed (the move is published on the bus with reason
  `fleet`), with the fleet's reset timer;
- each worker's consecutive-failure streak is written when it changed, and the fleet opens when
  the streaks add up to `failure_threshold` (merged per-worker counts: successes cost nothing);
- half-open probes need a fleet probe slot: at most `half_open_max_calls` slots are granted per
  open period (a Redis counter); a worker holding one renews its expiry (`reset_timeout`) on every
  tick while it probes, so a slot outlives a slow probe but not a worker that died holding it.

All of it is one Lua script per breaker, pipelined: one round trip per tick for all the breakers
of a backend. Polling was chosen over pub/sub: nothing is lost while a connection is down (the
next poll reads the current state), no connection is held open per worker, and the bound is
simple: another worker rejects within `sync_interval` + two round trips (each bounded by the
backend's `timeout`). When Redis cannot be reached, each breaker decides alone (probes included),
counts every failed sync, logs the change once, and resyncs when Redis answers again.
A backend made before a fork (gunicorn `--preload`) restarts in each child under new worker ids
(`core/forks.py`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from seawall.breakers.machine import BreakerStateMachine
from seawall.core.enums import BreakerState
from seawall.core.forks import restart_in_children

__all__ = ["SYNC_SCRIPT", "FleetLink", "FleetSync", "fleet_of"]

log = logging.getLogger("seawall")

_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
_FORCED_OPEN, _DISABLED = BreakerState.FORCED_OPEN, BreakerState.DISABLED
_PUBLISHED = (_CLOSED, _OPEN, _FORCED_OPEN, _DISABLED)  # half_open is granted by the script, never published
CLOSED_STATE_TTL_MS = 3_600_000  # a closed breaker's fleet state expires after an idle hour

# KEYS: state hash, streaks hash, probes counter.
# ARGV: worker, streak (-1: unchanged), publish ('' or a state), reason, want probe (0/1),
#       failure_threshold, reset_timeout (s), half_open_max_calls, streak ttl (ms), closed ttl (ms),
#       holding a probe slot (0/1: renews the slots' expiry while this worker probes).
# Returns {state, generation, seconds since the fleet opened, probe slot granted (0/1)}.
SYNC_SCRIPT = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cur = redis.call('HMGET', KEYS[1], 'state', 'gen', 'opened')
local state = cur[1] or 'closed'
local gen = tonumber(cur[2]) or 0
local opened = tonumber(cur[3]) or now
local reset = tonumber(ARGV[7])
local function move(to, reason)
  gen = gen + 1
  state = to
  opened = now
  redis.call('HSET', KEYS[1], 'state', to, 'gen', gen, 'opened', string.format('%.6f', now), 'reason', reason)
  if to == 'closed' then redis.call('PEXPIRE', KEYS[1], ARGV[10]) else redis.call('PERSIST', KEYS[1]) end
  redis.call('DEL', KEYS[2], KEYS[3])
end
local pub, reason = ARGV[3], ARGV[4]
if pub ~= '' then
  if reason == 'manual' then
    move(pub, reason)
  elseif reason == 'resync' then
    if not cur[2] then move(pub, reason) end
  elseif pub == 'open' and (state == 'closed' or state == 'half_open') then
    move(pub, reason)
  elseif pub == 'closed' and state == 'half_open' then
    move(pub, reason)
  end
end
local streak = tonumber(ARGV[2])
if streak >= 0 then
  if streak == 0 then
    redis.call('HDEL', KEYS[2], ARGV[1])
  else
    redis.call('HSET', KEYS[2], ARGV[1], streak)
    redis.call('PEXPIRE', KEYS[2], ARGV[9])
    if state == 'closed' then
      local sum = 0
      for _, v in ipairs(redis.call('HVALS', KEYS[2])) do sum = sum + tonumber(v) end
      if sum >= tonumber(ARGV[6]) then move('open', 'failures') end
    end
  end
end
if ARGV[11] == '1' and state == 'half_open' then
  redis.call('PEXPIRE', KEYS[3], math.max(1, math.floor(reset * 1000)))
end
local granted = 0
if ARGV[5] == '1' and (state == 'open' or state == 'half_open') and now - opened >= reset then
  local slots = tonumber(redis.call('GET', KEYS[3])) or 0
  if slots < tonumber(ARGV[8]) then
    redis.call('SET', KEYS[3], slots + 1, 'PX', math.max(1, math.floor(reset * 1000)))
    granted = 1
    if state == 'open' then
      state = 'half_open'
      redis.call('HSET', KEYS[1], 'state', 'half_open')
    end
  end
end
return {state, gen, string.format('%.6f', now - opened), granted}
"""


class FleetLink:
    """One shared breaker's side of the sync: what it last told and heard from the fleet.

    Touched only by its `FleetSync` thread, apart from the counters read by snapshots."""

    def __init__(
        self, machine: BreakerStateMachine, prefix: str, wake: Callable[[], None], sync: FleetSync
    ) -> None:
        self.machine = machine
        self.sync = sync
        base = prefix + machine.name
        self.keys = [base, base + ":streaks", base + ":probes"]
        self.worker = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.up = True
        self.errors = 0  # failed syncs
        self._seen_gen: int | None = None  # None: (re)connecting, publish what we hold
        self._local_gen = machine.generation
        self._streak = 0
        self._asked: tuple[int, int, bool] = (self._local_gen, 0, False)
        self._permits = 0
        machine.grant(0)
        machine.notify = wake

    def request(self) -> list[str]:
        """The script's ARGV for this tick (reads the machine; `heard` commits what was sent)."""
        machine = self.machine
        gen, state, reason, streak, wants = machine.fleet_view()
        publish = ""
        if gen != self._local_gen and reason != "fleet" and state in _PUBLISHED:
            publish = state.value
        elif self._seen_gen is None and state is not _CLOSED and state in _PUBLISHED:
            publish, reason = state.value, "resync"  # applies only where Redis lost the state
        report = streak if streak != self._streak or self._seen_gen is None else -1
        self._asked = (gen, streak, wants)
        settings = machine.settings
        reset = settings.reset_timeout
        return [
            self.worker,
            str(report),
            publish,
            reason if publish else "",
            "1" if wants else "0",
            str(settings.failure_threshold),
            repr(reset),
            str(settings.half_open_max_calls),
            str(max(60_000, int(reset * 2000))),
            str(CLOSED_STATE_TTL_MS),
            "1" if self._permits and state is _HALF_OPEN else "0",
        ]

    def heard(self, reply: Any) -> None:
        """Apply the fleet's answer: adopt its state, take a granted probe slot."""
        state = BreakerState(_text(reply[0]))
        gen, elapsed, granted = int(reply[1]), float(_text(reply[2])), int(reply[3])
        machine = self.machine
        if not self.up:
            self.up = True
            log.info("breaker %r: fleet state in Redis is reachable again; sharing", machine.name)
        asked_gen, self._streak, asked_want = self._asked
        self._local_gen = asked_gen
        fleet_moved = gen != self._seen_gen
        if fleet_moved:
            self._seen_gen = gen
            self._permits = 0
        self._permits += granted
        if machine.generation != asked_gen:  # moved locally since the request: publish it first
            machine.grant(self._permits, clear_want=False)
            return
        target = _OPEN if state is _HALF_OPEN else state
        local = machine.state
        if local is _HALF_OPEN and state is _HALF_OPEN and self._permits:
            machine.grant(self._permits, clear_want=asked_want)
        elif local is not target or (target is _OPEN and fleet_moved):
            machine.adopt(target, elapsed, self._permits)
            self._local_gen = machine.generation
        else:
            machine.grant(self._permits, clear_want=asked_want)

    def detach(self) -> None:
        self.sync.detach(self)

    def rejoin(self, wake: Callable[[], None]) -> None:
        """In a forked child: report as a worker of its own (sharing the parent's id would merge
        both failure streaks into one) and hold no probe slot the parent may be using."""
        self.worker = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seen_gen = None
        self._permits = 0
        self.machine.grant(0)
        self.machine.notify = wake

    def lost(self, exc: BaseException) -> None:
        """Redis did not answer: decide locally (probes too) until it does."""
        self.errors += 1
        self._seen_gen = None
        self._permits = 0
        self.machine.grant(None, clear_want=True)
        if self.up:
            self.up = False
            log.warning(
                "breaker %r: fleet state in Redis unreachable (%s); deciding locally until it answers",
                self.machine.name,
                type(exc).__name__,
            )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FleetSync:
    """The background thread that syncs every shared breaker of one backend (one round trip per
    tick). Started by the first breaker attached, stopped by `close()` (the backend's `close`)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.interval: float = backend.sync_interval
        self._links: list[FleetLink] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._sha: str | None = None
        self._down_until = -1.0
        self.fork_lock = threading.Lock()  # held through a tick: a fork never copies one half done
        restart_in_children(self)

    def before_fork(self) -> None:
        """Nothing to carry: the child rejoins from the state its breakers hold."""

    def after_fork(self, at_fork: object) -> None:
        """In a forked child (gunicorn `--preload`): the parent's thread did not come along and the
        child is a worker of its own, so every link rejoins under a new worker id and a new thread
        syncs them."""
        stopped = self._stopped.is_set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = None
        self._down_until = -1.0
        for link in self._links:
            link.rejoin(self._wake.set)
        if stopped:
            self._stopped.set()
        elif self._links:
            self._thread = threading.Thread(target=self._run, name="seawall-fleet-sync", daemon=True)
            self._thread.start()

    def attach(self, machine: BreakerStateMachine) -> FleetLink:
        link = FleetLink(machine, self.backend.breaker_prefix, self._wake.set, self)
        with self._lock:
            self._links.append(link)
            if self._thread is None:
                self._stopped.clear()
                self._thread = threading.Thread(target=self._run, name="seawall-fleet-sync", daemon=True)
                self._thread.start()
        self._wake.set()
        return link

    def detach(self, link: FleetLink) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)
        link.machine.notify = None
        link.machine.grant(None, clear_want=True)

    def close(self) -> None:
        """Stop the thread after one last sync, so a transition just before it is published
        (bounded: one tick, itself bounded by the backend's timeout)."""
        with self._lock:
            thread, self._thread = self._thread, None
        self._stopped.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if time.monotonic() < self._down_until:
                continue
            self.tick()  # also once after close(): a trip just before it still reaches the fleet

    def tick(self) -> None:
        """One sync of every attached breaker; never raises (failures are the links' to count)."""
        with self.fork_lock:
            with self._lock:
                links = list(self._links)
            if not links:
                return
            try:
                replies = self._exchange(links)
            except Exception as exc:
                self._down_until = time.monotonic() + self.backend.recheck
                for link in links:
                    link.lost(exc)
                return
            for link, reply in zip(links, replies, strict=True):
                try:
                    link.heard(reply)
                except Exception as exc:  # a malformed reply: count it like an unreachable server
                    link.lost(exc)

    def _exchange(self, links: list[FleetLink]) -> list[Any]:
        client = self.backend.client()
        requests = [link.request() for link in links]
        for attempt in (1, 2):
            if self._sha is None:
                self._sha = str(client.script_load(SYNC_SCRIPT))
            pipe = client.pipeline(transaction=False)
            for link, args in zip(links, requests, strict=True):
                pipe.evalsha(self._sha, 3, *link.keys, *args)
            replies = pipe.execute(raise_on_error=False)
            failed = [reply for reply in replies if isinstance(reply, Exception)]
            if not failed:
                return list(replies)
            self._sha = None  # NOSCRIPT after a restart: load it and send again, once
            if attempt == 2 or not all(isinstance(exc, self._no_script) for exc in failed):
                raise failed[0]
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def _no_script(self) -> type[Exception]:
        from redis.exceptions import NoScriptError

        return NoScriptError


def fleet_of(backend: Any) -> FleetSync:
    """The backend's sync thread, made on first use (one per backend, shared by its breakers)."""
    for field in ("client", "breaker_prefix", "sync_interval", "recheck"):
        if not hasattr(backend, field):
            raise TypeError(f"shared must be a seawall.RedisBackend, got {backend!r}")
    fleet: FleetSync | None = backend.fleet
    if fleet is None:
        fleet = backend.fleet = FleetSync(backend)
    return fleet
