"""Local HTTP receivers standing in for Slack and PagerDuty, for tests that run a real Alertmanager.

They listen on 127.0.0.1 (a free port), record the JSON bodies Alertmanager really sends, and let a
test wait for a payload without sleeping in a loop (a condition variable is notified on every POST).

    with FakeSlack() as slack, FakePagerDuty() as pagerduty:
        config = wire_alertmanager_config(shipped_text, slack_url_file=..., pagerduty_key_file=...,
                                          pagerduty_url=pagerduty.url)
        ...
        msg = slack.wait_for(lambda p: "CircuitBreakerOpen" in p["attachments"][0]["title"], timeout=20)

`status` makes a receiver answer with an error (e.g. 500) to exercise Alertmanager's retries.
`closed_port_url()` gives a URL nothing listens on (an unreachable receiver).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

__all__ = [
    "FakePagerDuty",
    "FakeReceiver",
    "FakeSlack",
    "QuietHandler",
    "closed_port_url",
    "free_port",
    "slack_text",
    "wire_alertmanager_config",
]

Payload = dict[str, Any]
R = TypeVar("R", bound="FakeReceiver")

SLACK_URL_FILE = "/etc/alertmanager/secrets/slack_webhook_url"
PAGERDUTY_KEY_FILE = "/etc/alertmanager/secrets/pagerduty_routing_key"
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port_url(path: str = "/") -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}{path}"


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps test output quiet and answers in one call."""

    def answer(self, status: int, body: bytes = b"", content_type: str | None = None) -> None:
        """Status, Content-Type (when given) and Content-Length headers, then the body."""
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class FakeReceiver:
    """A threaded HTTP server recording every POSTed JSON body; use as a context manager."""

    path = "/"
    reply_body: bytes = b"ok"

    def __init__(self, status: int = 200) -> None:
        if not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {status!r}")
        self.status = status
        self._cond = threading.Condition()
        self._payloads: list[Payload] = []
        self.paths: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self: R) -> R:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = {"_unparsed": raw.decode("utf-8", "replace")}
                receiver._record(self.path, body)
                try:
                    self.answer(receiver.status, receiver.reply_body, "application/json")
                except ConnectionError:  # the sender went away (e.g. Alertmanager stopped): recorded anyway
                    return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self: R) -> R:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- data -----------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    @property
    def payloads(self) -> list[Payload]:
        """A copy of every JSON body received so far, oldest first."""
        with self._cond:
            return list(self._payloads)

    def _record(self, path: str, body: Any) -> None:
        with self._cond:
            self.paths.append(path)
            self._payloads.append(body if isinstance(body, dict) else {"_body": body})
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Payload], bool], timeout: float = 10.0) -> Payload:
        """Return the first payload (already received or arriving within `timeout` s) matching `predicate`.

        Raises TimeoutError listing what did arrive, so a failing test shows the real payloads.
        """
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = 0
            while True:
                for payload in self._payloads[seen:]:
                    if predicate(payload):
                        return payload
                seen = len(self._payloads)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{type(self).__name__}: no matching payload within {timeout}s; "
                        f"got {len(self._payloads)}: {json.dumps(self._payloads)[:4000]}"
                    )
                self._cond.wait(left)

    def __iter__(self) -> Iterator[Payload]:
        return iter(self.payloads)


class FakeSlack(FakeReceiver):
    """Stands in for a Slack incoming webhook (answers 200 "ok" as Slack does)."""

    path = "/services/T00000000/B00000000/seawall-test"


class FakePagerDuty(FakeReceiver):
    """Stands in for PagerDuty's Events API v2 enqueue endpoint (answers 202 like PagerDuty)."""

    path = "/v2/enqueue"
    reply_body = b'{"status":"success","message":"Event processed"}'

    def __init__(self, status: int = 202) -> None:
        super().__init__(status)


def slack_text(payload: Payload) -> str:
    """Everything a human would read in one Slack message: title, text and fallback of each attachment."""
    parts = [str(payload.get("text") or "")]
    for att in payload.get("attachments") or []:
        parts += [str(att.get(k) or "") for k in ("title", "title_link", "text", "fallback", "pretext")]
    return "\n".join(p for p in parts if p)


def wire_alertmanager_config(
    text: str,
    *,
    slack_url_file: str,
    pagerduty_key_file: str,
    pagerduty_url: str,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> str:
    """The shipped alertmanager.yml with secret files, the PagerDuty URL and timings substituted.

    Plain string replacement on the documented substitution points, so what runs is the shipped
    route tree, inhibitions, receivers and templates (copy `alertmanager/templates/` next to the
    written file: `templates:` is resolved relative to it).
    """
    replacements = {
        SLACK_URL_FILE: slack_url_file,
        PAGERDUTY_KEY_FILE: pagerduty_key_file,
        PAGERDUTY_URL: pagerduty_url,
        "group_wait: 30s": f"group_wait: {group_wait}",
        "group_interval: 5m": f"group_interval: {group_interval}",
        "repeat_interval: 4h": f"repeat_interval: {repeat_interval}",
        "repeat_interval: 1h": f"repeat_interval: {repeat_interval}",
    }
    for old, new in replacements.items():
        if old not in text:
            raise ValueError(f"substitution point {old!r} not found in the Alertmanager config")
        text = text.replace(old, new)
    return text
