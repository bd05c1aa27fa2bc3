"""A minimal OTLP/HTTP trace receiver for tests: http.server on 127.0.0.1, port 0, in a thread.

Modes: "ok" decodes each body as ExportTraceServiceRequest and answers 200; "error" answers 500;
"hang" holds each request until `release()` (an endpoint that accepted the connection and went quiet).
"""

from __future__ import annotations

import gzip
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from stacktools.receivers import QuietHandler


class OTLPReceiver:
    def __init__(self, mode: str = "ok") -> None:
        if mode not in ("ok", "error", "hang"):
            raise ValueError(f"mode must be ok, error or hang, got {mode!r}")
        self.mode = mode
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.received = threading.Event()  # set on every request (also hanging ones)
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver._lock:
                    receiver.paths.append(self.path)
                receiver.received.set()
                if receiver.mode == "hang":
                    receiver._release.wait(timeout=30)
                    return
                if receiver.mode == "error":
                    self.answer(500)
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver._lock:
                    receiver.requests.append(request)
                self.answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def spans(self) -> list[Any]:
        """Every span received so far, flattened."""
        with self._lock:
            requests = list(self.requests)
        return [
            span
            for request in requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def resources(self) -> list[Any]:
        with self._lock:
            return [rs.resource for request in self.requests for rs in request.resource_spans]
