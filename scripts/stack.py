"""`make stack`: the monitoring stack without Docker, until Ctrl-C.

Runs the demo service, Debian's `prometheus` and `prometheus-alertmanager` with the shipped
configs (substituted copies under `.stack/`: targets, receiver URLs, secret files; `--fast` also
shortens intervals and `for:` durations as the end-to-end test does). The process handling lives in
stacktools/harness.py, shared with the tests.

Notifications go to the real Slack/PagerDuty when `secrets/slack_webhook_url` and
`secrets/pagerduty_routing_key` hold real values; otherwise (missing, or still the `*.example`
placeholders that `make secrets` copies) to local fake receivers whose messages are printed, with a
warning saying why. `--ha` runs two Prometheus replicas and two clustered Alertmanagers
(docker-compose.ha.yml, natively).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # stacktools/ lives at the repository root

from stacktools.harness import FAST, SHIPPED, Receivers, Stack, binaries_missing, http  # noqa: E402
from stacktools.receivers import FakePagerDuty, FakeReceiver, FakeSlack  # noqa: E402
from stacktools.timings import shipped_alerts, time_to_fire, time_to_resolve  # noqa: E402


def shipped_note() -> str:
    """How long the page takes with the shipped timings: docs/alerts.md's formulas (stacktools.timings)."""
    rule_for = next(f for name, _, f in shipped_alerts() if name == "CircuitBreakerOpen")
    fastest, worst = time_to_fire(SHIPPED, rule_for)
    return (
        f"  shipped timings: CircuitBreakerOpen pages {fastest / 60:.1f}-{worst / 60:.1f} minutes after an "
        f"outage and resolves up to {time_to_resolve(SHIPPED) / 60:.1f} minutes after healing\n"
        "  (Alertmanager's group_interval); `--fast` does both in seconds"
    )


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
    p.add_argument("--ha", action="store_true", help="two Prometheus replicas, two clustered Alertmanagers")
    p.add_argument("--prometheus-b-port", type=int, default=9091, help="--ha: the second Prometheus")
    p.add_argument("--alertmanager-b-port", type=int, default=9094, help="--ha: the second Alertmanager")
    p.add_argument(
        "--cluster-ports",
        default="9194,9195",
        help="--ha: the two Alertmanagers' gossip ports, comma-separated",
    )
    p.add_argument("--secrets", type=Path, default=ROOT / "secrets", help="where the real secret files are")
    return p


def placeholder(path: Path) -> bool:
    """True when `path` still holds its `*.example` placeholder (what `make secrets` copies)."""
    example = path.with_name(path.name + ".example")
    return example.is_file() and path.read_text().strip() == example.read_text().strip()


def real_receivers(secrets: Path) -> tuple[Receivers | None, str]:
    """The real Slack/PagerDuty from `secrets`, or None and why the local fakes are used instead."""
    files = [secrets / "slack_webhook_url", secrets / "pagerduty_routing_key"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        return None, f"no {' and no '.join(missing)} in {secrets}"
    placeholders = [f.name for f in files if placeholder(f)]
    if placeholders:
        return None, f"{' and '.join(placeholders)} in {secrets}: still the *.example placeholder"
    slack, key = (f.read_text().strip() for f in files)
    return Receivers(slack, pagerduty_key=key), ""


def ui_lines(stack: Stack) -> list[str]:
    """Links that work on the binaries running: Debian's Prometheus serves its UI under /classic/, and
    Debian's Alertmanager has no web UI at all, so for it the API and amtool commands are printed."""
    lines = []
    for name in stack.prometheus_names:
        url = stack.url(name)
        status, _ = http("GET", f"{url}/alerts", timeout=2)
        lines.append(f"  {name:<16}{url}{'/alerts' if status == 200 else '/classic/alerts'}")
    for name in stack.alertmanager_names:
        url = stack.url(name)
        status, body = http("GET", f"{url}/", timeout=2)
        if status == 200 and b"does not include a web" not in body:
            lines.append(f"  {name:<16}{url}")
        else:
            lines.append(
                f"  {name:<16}{url}/api/v2/alerts   (no web UI in this build; "
                f"amtool --alertmanager.url={url} alert query)"
            )
    return lines


def show(name: str, receiver: FakeReceiver, seen: int, clock: Callable[[], float] = time.time) -> int:
    """Print the payloads `receiver` got since `seen`, each with the local time it was printed
    (so a newcomer can tell when an alert fired relative to the outage); returns the new count."""
    payloads = receiver.payloads
    for payload in payloads[seen:]:
        if "attachments" in payload:
            line = payload["attachments"][0].get("title", "")
            detail = str(payload["attachments"][0].get("text", "")).splitlines()[:1]
        else:
            line = f"{payload.get('event_action')}: {payload.get('payload', {}).get('summary', '')}"
            detail = []
        when = time.strftime("%H:%M:%S", time.localtime(clock()))
        print(f"  {when} -> {name}: {line}", *(f"\n     {d}" for d in detail), flush=True)
    return len(payloads)


JSON = "'content-type: application/json'"  # the chaos API refuses anything a cross-site form could send


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    missing = binaries_missing()
    if missing:
        print(f"not installed: {', '.join(missing)}; run `make system-deps`", file=sys.stderr)
        return 2

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    receivers, why = (None, "--fake-receivers") if args.fake_receivers else real_receivers(args.secrets)
    if "placeholder" in why:
        warning = (
            f"WARNING: {why}. Notifications sent there would vanish, so they go to local fake receivers "
            "(printed below) instead. Put the real webhook URL and routing key in those files to notify "
            "Slack and PagerDuty."
        )
        print(f"\n{'!' * 100}\n{warning}\n{'!' * 100}\n", file=sys.stderr, flush=True)
    fakes: list[tuple[str, FakeReceiver]] = []
    if receivers is None:
        slack, pagerduty = FakeSlack().start(), FakePagerDuty().start()
        fakes = [("Slack", slack), ("PagerDuty", pagerduty)]
        receivers = Receivers(slack.url, pagerduty.url)
    try:
        cluster = [int(port) for port in args.cluster_ports.split(",")]
    except ValueError:
        print(
            f"--cluster-ports must be two ports like 9194,9195, got {args.cluster_ports!r}", file=sys.stderr
        )
        return 2
    if len(cluster) != 2:
        print(
            f"--cluster-ports must be two ports like 9194,9195, got {args.cluster_ports!r}", file=sys.stderr
        )
        return 2
    stack = Stack(
        args.workdir,
        receivers,
        FAST if args.fast else SHIPPED,
        demo_port=port_or_free(args.demo_port, "the demo"),
        prometheus_port=port_or_free(args.prometheus_port, "Prometheus"),
        alertmanager_port=port_or_free(args.alertmanager_port, "Alertmanager"),
        traffic_rate=args.traffic_rate,
        prometheus_replicas=2 if args.ha else 1,
        alertmanager_replicas=2 if args.ha else 1,
        ports={
            "prometheus-b": port_or_free(args.prometheus_b_port, "the second Prometheus"),
            "alertmanager-b": port_or_free(args.alertmanager_b_port, "the second Alertmanager"),
        }
        if args.ha
        else {},
        cluster_ports={
            "alertmanager": port_or_free(cluster[0], "the first Alertmanager's gossip"),
            "alertmanager-b": port_or_free(cluster[1], "the second Alertmanager's gossip"),
        }
        if args.ha
        else {},
    )
    try:
        stack.start()  # from empty Prometheus and Alertmanager data: no earlier run's series
        print(
            f"""
seawall {"HA " if args.ha else ""}stack is up (configs, data and logs in {stack.workdir}):
  demo            {stack.demo_url}/resilience   (metrics {stack.demo_url}/metrics)
{chr(10).join(ui_lines(stack))}
  notifications   {
                "local fakes (" + why + "): Slack " + fakes[0][1].url + ", PagerDuty " + fakes[1][1].url
                if fakes
                else "the real Slack webhook and PagerDuty from " + str(args.secrets)
            }
  break it:       curl -X POST {stack.demo_url}/chaos/payments -H {JSON} -d '{{"outage": true}}'
  heal it:        curl -X POST {stack.demo_url}/chaos/payments -H {JSON} -d '{{"outage": false}}'
{"" if args.fast else shipped_note()}
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
