"""`make stack`: the monitoring stack without Docker, until Ctrl-C.

Runs the demo service, Debian's `prometheus` and `prometheus-alertmanager` with the shipped
configs (substituted copies under `.stack/`: targets, receiver URLs, secret files; `--fast` also
shortens intervals and `for:` durations as the end-to-end test does). The process handling lives in
stacktools/harness.py, shared with the tests.

Notifications go to the real Slack/PagerDuty when `secrets/slack_webhook_url` and
`secrets/pagerduty_routing_key` exist; otherwise to local fake receivers whose messages are printed.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # stacktools/ lives at the repository root

from stacktools.harness import FAST, SHIPPED, Receivers, Stack, binaries_missing  # noqa: E402
from stacktools.receivers import FakePagerDuty, FakeReceiver, FakeSlack  # noqa: E402


def port_or_free(port: int, name: str) -> int:
    """`port` if it can be bound on 127.0.0.1, else 0 (a free one is picked) with a note."""
    if port == 0:
        return 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            print(f"port {port} for {name} is taken; using a free one", flush=True)
            return 0
    return port


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="make stack", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=ROOT / ".stack", help="where configs, data, logs go")
    p.add_argument("--demo-port", type=int, default=8000)
    p.add_argument("--prometheus-port", type=int, default=9090)
    p.add_argument("--alertmanager-port", type=int, default=9093)
    p.add_argument("--traffic-rate", type=float, default=4.0, help="demo requests/s per dependency")
    p.add_argument(
        "--fast", action="store_true", help="1s scrape/eval, for: 1s, group_wait 1s (as the e2e test)"
    )
    p.add_argument(
        "--fake-receivers", action="store_true", help="use local fakes even if secrets/ has real ones"
    )
    return p


def real_receivers() -> Receivers | None:
    slack = ROOT / "secrets" / "slack_webhook_url"
    key = ROOT / "secrets" / "pagerduty_routing_key"
    if slack.is_file() and key.is_file():
        return Receivers(slack.read_text().strip(), pagerduty_key=key.read_text().strip())
    return None


def show(name: str, receiver: FakeReceiver, seen: int) -> int:
    """Print the payloads `receiver` got since `seen`; returns the new count."""
    payloads = receiver.payloads
    for payload in payloads[seen:]:
        if "attachments" in payload:
            line = payload["attachments"][0].get("title", "")
            detail = str(payload["attachments"][0].get("text", "")).splitlines()[:1]
        else:
            line = f"{payload.get('event_action')}: {payload.get('payload', {}).get('summary', '')}"
            detail = []
        print(f"  -> {name}: {line}", *(f"\n     {d}" for d in detail), flush=True)
    return len(payloads)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    missing = binaries_missing()
    if missing:
        print(f"not installed: {', '.join(missing)}; run `make system-deps`", file=sys.stderr)
        return 2

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    receivers = None if args.fake_receivers else real_receivers()
    fakes: list[tuple[str, FakeReceiver]] = []
    if receivers is None:
        slack, pagerduty = FakeSlack().start(), FakePagerDuty().start()
        fakes = [("Slack", slack), ("PagerDuty", pagerduty)]
        receivers = Receivers(slack.url, pagerduty.url)
    stack = Stack(
        args.workdir,
        receivers,
        FAST if args.fast else SHIPPED,
        demo_port=port_or_free(args.demo_port, "the demo"),
        prometheus_port=port_or_free(args.prometheus_port, "Prometheus"),
        alertmanager_port=port_or_free(args.alertmanager_port, "Alertmanager"),
        traffic_rate=args.traffic_rate,
    )
    try:
        stack.start()
        print(
            f"""
seawall stack is up (configs, data and logs in {stack.workdir}):
  demo          {stack.demo_url}/resilience   (metrics {stack.demo_url}/metrics)
  Prometheus    {stack.prometheus_url}/alerts
  Alertmanager  {stack.alertmanager_url}
  notifications {
                "local fakes: Slack " + fakes[0][1].url + ", PagerDuty " + fakes[1][1].url
                if fakes
                else "the real Slack webhook and PagerDuty from secrets/"
            }
  break it:     curl -X POST {stack.demo_url}/chaos/payments -d '{{"outage": true}}'
  heal it:      curl -X POST {stack.demo_url}/chaos/payments -d '{{"outage": false}}'
{"" if args.fast else "  (shipped timings: CircuitBreakerOpen pages after 2 minutes; `--fast` for 1 s)"}
Ctrl-C stops everything.""",
            flush=True,
        )
        seen = [0 for _ in fakes]
        while True:
            time.sleep(1.0)
            for i, (name, fake) in enumerate(fakes):
                seen[i] = show(name, fake, seen[i])
            for name, process in stack.processes.items():
                if not process.running():
                    print(f"{name} stopped unexpectedly; last log lines:\n{process.tail()}", file=sys.stderr)
                    return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    finally:
        stack.stop()
        for _, fake in fakes:
            fake.stop()


if __name__ == "__main__":
    sys.exit(main())
