"""`python -m seawall demo [--host 127.0.0.1] [--port 8000]`, also the `seawall` console script."""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seawall", description="seawall command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo service with the live status page")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one")
    demo.add_argument(
        "--traffic-rate", type=float, default=4.0, help="generated requests/s per dependency; 0 turns it off"
    )
    demo.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _in_use(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound (another process listens there), or None when it can."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or type(exc).__name__
    return None


def _run_demo(host: str, port: int, traffic_rate: float, log_level: str) -> int:
    try:
        from .demo import create_demo_app
        from .starlette import serve
    except ImportError as exc:
        print(
            f"seawall demo needs the extras: pip install 'seawall[all]' ({exc.name} is missing)",
            file=sys.stderr,
        )
        return 2
    busy = _in_use(host, port)
    if busy is not None:
        # uvicorn would log `[Errno 98] address already in use` and exit with no way forward.
        print(
            f"seawall demo: {host}:{port} is not free ({busy}); pick another port: "
            f"`python -m seawall demo --port 8001`, or `make demo PORT=8001`",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_demo_app(traffic_rate=traffic_rate)

    def started(bound_host: str, bound_port: int) -> None:
        shown = "127.0.0.1" if bound_host in ("0.0.0.0", "::") else bound_host
        base = f"http://{shown}:{bound_port}"
        print(f"seawall demo listening on {base}", flush=True)
        for label, path in (
            ("status page", "/resilience"),
            ("metrics", "/metrics"),
            ("readiness", "/health/ready"),
            ("chaos", "/chaos"),
        ):
            print(f"  {label:<12} {base}{path}", flush=True)
        print(
            f"  break it:    curl -X POST {base}/chaos/payments -H 'content-type: application/json'"
            " -d '{\"outage\": true}'",
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after its graceful shutdown
        serve(app, host=host, port=port, log_level=log_level, on_started=started)
    print("seawall demo stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        if not 0 <= args.port <= 65535:
            print(f"--port must be in 0..65535, got {args.port}", file=sys.stderr)
            return 2
        if args.traffic_rate < 0:
            print(f"--traffic-rate must be >= 0, got {args.traffic_rate}", file=sys.stderr)
            return 2
        return _run_demo(args.host, args.port, args.traffic_rate, args.log_level)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
