"""The seawall stack without Docker: the demo service, Prometheus and Alertmanager as local processes.

One implementation for two users: `scripts/stack.py` (`make stack`) and the end-to-end tests
(`tests/test_stack_e2e.py`). Both run the shipped `prometheus/prometheus.yml`, `rules/*.yml` and
`alertmanager/alertmanager.yml` (+ templates); the copies written under the work directory differ
only in targets (compose service names become 127.0.0.1 ports), receiver URLs, secret files and,
when `Timings` says so, intervals and `for:` durations. Scrape jobs for services that only exist in
compose (collector, Tempo) are dropped, since nothing would answer them here.

Every wait is bounded; every process started is stopped by `Stack.stop()` (also on `with` exit).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from stacktools.processes import stop_process
from stacktools.receivers import PAGERDUTY_KEY_FILE, PAGERDUTY_URL, SLACK_URL_FILE, free_port

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or ""
# Replica i of Prometheus/Alertmanager is named like its compose service: "prometheus",
# "prometheus-b", ...; its `replica` external label is the letter.
REPLICAS = "abc"
# compose host:port -> which local process answers it ("localhost:9090" is each Prometheus itself)
COMPOSE_TARGETS = {
    "demo:8000": "demo",
    "localhost:9090": "prometheus",
    **{f"{name}:9093": name for name in ("alertmanager", "alertmanager-b", "alertmanager-c")},
}


def replica_name(service: str, index: int) -> str:
    """The compose service name of replica `index`: prometheus, prometheus-b, prometheus-c."""
    return service if index == 0 else f"{service}-{REPLICAS[index]}"


T = TypeVar("T")


def binaries_missing() -> list[str]:
    """Names of the binaries the stack needs that are not installed (empty when all are)."""
    missing = [] if os.access(PROMETHEUS_BIN, os.X_OK) else ["prometheus"]
    if not ALERTMANAGER_BIN:
        missing.append("prometheus-alertmanager")
    return missing


@dataclass(frozen=True)
class Timings:
    """Intervals to substitute; None keeps the shipped value. `rule_for` replaces every `for:`."""

    scrape_interval: str | None = None
    evaluation_interval: str | None = None
    rule_for: str | None = None
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None
    # Alertmanager cluster (HA only): how long each member waits for the ones before it to notify.
    peer_timeout: str | None = None


SHIPPED = Timings()
# The e2e tests: an alert can reach a receiver within ~3 x (scrape + eval) + group_wait.
FAST = Timings(
    "1s", "1s", "1s", group_wait="1s", group_interval="1s", repeat_interval="1h", peer_timeout="2s"
)


@dataclass
class Receivers:
    """Where Alertmanager sends: a Slack webhook URL, a PagerDuty Events v2 URL and routing key."""

    slack_url: str
    pagerduty_url: str = PAGERDUTY_URL
    pagerduty_key: str = "seawall-local-routing-key"


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy and return that; TimeoutError after `timeout` s."""
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, got {timeout!r}")
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:  # None, False and empty results mean "not yet"
                return result
        except (OSError, ValueError, KeyError) as exc:  # not up yet
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout}s (last error: {last_error!r})")
        time.sleep(interval)


def http(method: str, url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP request to a local process; returns (status, body) for any status."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def render_prometheus(text: str, ports: dict[str, int], rules_glob: str, timings: Timings) -> str:
    """The shipped prometheus.yml with local targets, the local rules directory and `timings`."""
    config = yaml.safe_load(text)
    if timings.scrape_interval:
        config["global"]["scrape_interval"] = timings.scrape_interval
    if timings.evaluation_interval:
        config["global"]["evaluation_interval"] = timings.evaluation_interval
    config["rule_files"] = [rules_glob]

    def local(targets: list[str]) -> list[str]:
        return [f"127.0.0.1:{ports[COMPOSE_TARGETS[t]]}" for t in targets if t in COMPOSE_TARGETS]

    for am in config["alerting"]["alertmanagers"]:
        for static in am.get("static_configs", []):
            static["targets"] = local(static["targets"])
    jobs = []
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            static["targets"] = local(static["targets"])
        # kept: jobs with local targets, and file_sd jobs (their target files are rendered separately)
        if "file_sd_configs" in job or any(s["targets"] for s in job.get("static_configs", [])):
            jobs.append(job)
    config["scrape_configs"] = jobs
    return str(yaml.safe_dump(config, sort_keys=False))


def render_targets(text: str, ports: dict[str, int]) -> str:
    """A file_sd target file (e.g. prometheus/alertmanagers-ha.yml) with local targets.

    Every target must have a local process: a member left out would silently get no alerts."""
    groups = yaml.safe_load(text)
    for group in groups:
        unknown = [t for t in group["targets"] if COMPOSE_TARGETS.get(t) not in ports]
        if unknown:
            raise ValueError(f"no local process for targets {unknown}")
        group["targets"] = [f"127.0.0.1:{ports[COMPOSE_TARGETS[t]]}" for t in group["targets"]]
    return str(yaml.safe_dump(groups, sort_keys=False))


def render_rules(text: str, timings: Timings) -> str:
    """A rule file with every `for:` set to `timings.rule_for` (unchanged when it is None)."""
    if timings.rule_for is None:
        return text
    return re.sub(r"^(\s+)for:\s*\S+", rf"\g<1>for: {timings.rule_for}", text, flags=re.M)


def render_alertmanager(text: str, secrets: Path, receivers: Receivers, timings: Timings) -> str:
    """The shipped alertmanager.yml with secret files, the PagerDuty URL and `timings` substituted."""
    replacements = {
        SLACK_URL_FILE: str(secrets / "slack_webhook_url"),
        PAGERDUTY_KEY_FILE: str(secrets / "pagerduty_routing_key"),
        PAGERDUTY_URL: receivers.pagerduty_url,
    }
    for old, new in replacements.items():
        if old not in text:
            raise ValueError(f"substitution point {old!r} not found in alertmanager.yml")
        text = text.replace(old, new)
    for key in ("group_wait", "group_interval", "repeat_interval"):
        value = getattr(timings, key)
        if value is not None:
            text = re.sub(rf"^(\s+){key}:\s*\S+", rf"\g<1>{key}: {value}", text, flags=re.M)
    return text


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            # A session of its own: Ctrl-C in `make stack` reaches stack.py, which stops us in order.
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None:
            return
        stop_process(self.popen, timeout=timeout)
        self.popen = None

    def kill(self) -> int:
        """SIGKILL the process group (its own session, so the pgid is the pid) and reap it."""
        if self.popen is None:
            raise RuntimeError(f"{self.name} is not running")
        pid = self.popen.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self.popen = None
        return pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    """Demo + Prometheus + Alertmanager on 127.0.0.1, configured from the shipped files.

    With `prometheus_replicas` / `alertmanager_replicas` > 1 it is the HA stack of
    docker-compose.ha.yml: identical Prometheus replicas (each with its own `replica` external
    label) that all send to every Alertmanager, and Alertmanagers that gossip as one cluster.
    """

    workdir: Path
    receivers: Receivers
    timings: Timings = SHIPPED
    demo_port: int = 0
    prometheus_port: int = 0
    alertmanager_port: int = 0
    traffic_rate: float = 4.0
    ready_timeout: float = 30.0
    demo_env: dict[str, str] = field(default_factory=dict)  # e.g. OTEL_EXPORTER_OTLP_ENDPOINT for traces
    root: Path = ROOT
    prometheus_replicas: int = 1
    alertmanager_replicas: int = 1
    processes: dict[str, Process] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # process name -> its web port
    cluster_ports: dict[str, int] = field(default_factory=dict)  # Alertmanager name -> its gossip port

    def __post_init__(self) -> None:
        if not (1 <= self.prometheus_replicas <= len(REPLICAS) and 1 <= self.alertmanager_replicas <= 3):
            raise ValueError(f"1 to {len(REPLICAS)} replicas of each are supported")
        self.workdir = self.workdir.resolve()
        self.demo_port = self.demo_port or free_port()
        self.prometheus_port = self.prometheus_port or free_port()
        self.alertmanager_port = self.alertmanager_port or free_port()
        # Ports given for the other replicas (`ports={"prometheus-b": 9091}`) and gossip ports
        # (`cluster_ports`) are kept; the rest are free ones.
        requested, requested_cluster = dict(self.ports), dict(self.cluster_ports)
        self.ports = {"demo": self.demo_port}
        self.cluster_ports = {}
        for i, name in enumerate(self.prometheus_names):
            self.ports[name] = self.prometheus_port if i == 0 else requested.get(name) or free_port()
        for i, name in enumerate(self.alertmanager_names):
            self.ports[name] = self.alertmanager_port if i == 0 else requested.get(name) or free_port()
            if self.clustered:
                self.cluster_ports[name] = requested_cluster.get(name) or free_port()

    # -- names and URLs --------------------------------------------------------------------------------
    @property
    def prometheus_names(self) -> list[str]:
        return [replica_name("prometheus", i) for i in range(self.prometheus_replicas)]

    @property
    def alertmanager_names(self) -> list[str]:
        return [replica_name("alertmanager", i) for i in range(self.alertmanager_replicas)]

    @property
    def clustered(self) -> bool:
        return self.alertmanager_replicas > 1

    def url(self, name: str) -> str:
        """The base URL of process `name` (demo, prometheus, prometheus-b, alertmanager, ...)."""
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def demo_url(self) -> str:
        return self.url("demo")

    @property
    def prometheus_url(self) -> str:
        """The first Prometheus still running (queries keep working when one replica is killed)."""
        live = [n for n in self.prometheus_names if n in self.processes and self.processes[n].running()]
        return self.url(live[0] if live else "prometheus")

    @property
    def alertmanager_url(self) -> str:
        return self.url("alertmanager")

    @property
    def secrets(self) -> Path:
        return self.workdir / "secrets"

    # -- configuration -------------------------------------------------------------------------------
    def write_configs(self) -> None:
        """Write the substituted copies under the work directory (safe to call again)."""
        rules_dir = self.workdir / "rules"
        if rules_dir.exists():
            shutil.rmtree(rules_dir)
        rules_dir.mkdir(parents=True)
        for rule_file in sorted((self.root / "rules").glob("*.yml")):
            (rules_dir / rule_file.name).write_text(render_rules(rule_file.read_text(), self.timings))
        shipped = self.root / "prometheus"
        targets = "alertmanagers-ha.yml" if self.clustered else "alertmanagers.yml"
        alertmanagers = {n: self.ports[n] for n in self.alertmanager_names}
        for name in self.prometheus_names:  # one directory each: "localhost:9090" is that replica
            ports = {**self.ports, **alertmanagers, "prometheus": self.ports[name]}
            config_dir = self.workdir / name
            config_dir.mkdir(parents=True, exist_ok=True)
            prometheus = render_prometheus(
                (shipped / "prometheus.yml").read_text(), ports, str(rules_dir / "*.yml"), self.timings
            )
            (config_dir / "prometheus.yml").write_text(prometheus)
            (config_dir / "alertmanagers.yml").write_text(
                render_targets((shipped / targets).read_text(), alertmanagers)
            )
        self.secrets.mkdir(parents=True, exist_ok=True)
        self.secrets.chmod(0o700)
        self.set_slack_url(self.receivers.slack_url)
        self._write_secret("pagerduty_routing_key", self.receivers.pagerduty_key)
        am_dir = self.workdir / "alertmanager"
        if am_dir.exists():
            shutil.rmtree(am_dir)
        shutil.copytree(self.root / "alertmanager" / "templates", am_dir / "templates")
        (am_dir / "alertmanager.yml").write_text(
            render_alertmanager(
                (self.root / "alertmanager" / "alertmanager.yml").read_text(),
                self.secrets,
                self.receivers,
                self.timings,
            )
        )

    def _write_secret(self, name: str, value: str) -> None:
        path = self.secrets / name
        path.write_text(value + "\n")
        path.chmod(0o600)

    def set_slack_url(self, url: str) -> None:
        """Point Slack notifications elsewhere; Alertmanager reads the file at each notification."""
        self.receivers.slack_url = url
        self._write_secret("slack_webhook_url", url)

    # -- processes -----------------------------------------------------------------------------------
    def start(self) -> Stack:
        missing = binaries_missing()
        if missing:
            raise RuntimeError(f"not installed: {', '.join(missing)} (make system-deps)")
        self.write_configs()
        self.clean_data()
        try:
            for name in self.alertmanager_names:
                self.start_alertmanager(name)
            self.start_demo()
            for index, name in enumerate(self.prometheus_names):
                self.start_prometheus(name, REPLICAS[index])
        except BaseException:
            self.stop()
            raise
        return self

    def clean_data(self) -> list[Path]:
        """Remove the Prometheus and Alertmanager data a previous run left in the work directory.

        A run's series carry its demo's `instance` (its port): an earlier run's stale series fired
        TaskHeartbeatStale and ErrorBudgetBurn in the next one, and an old notification log can
        hold back a new notification. Each start of the whole stack begins empty; restarting one
        process (the HA tests kill and restart replicas) keeps its data."""
        removed = []
        for name in [*self.prometheus_names, *self.alertmanager_names]:
            data = self.workdir / f"{name}-data"
            if data.exists():
                shutil.rmtree(data)
                removed.append(data)
        return removed

    def _run(self, name: str, argv: list[str], ready_url: str, env: dict[str, str] | None = None) -> None:
        process = Process(name, argv, self.workdir / "logs" / f"{name}.log")
        self.processes[name] = process
        process.start(env)

        def ready() -> bool:
            if not process.running():
                raise RuntimeError(f"{name} exited early:\n{process.tail()}")
            status, _ = http("GET", ready_url, timeout=2)
            return status == 200

        try:
            wait_until(ready, self.ready_timeout, f"{name} ready at {ready_url}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{name} log:\n{process.tail()}") from None

    def start_alertmanager(self, name: str = "alertmanager") -> None:
        data = self.workdir / f"{name}-data"
        data.mkdir(parents=True, exist_ok=True)
        if self.clustered:  # gossip on loopback with every other member, as the compose HA overlay does
            listen = f"127.0.0.1:{self.cluster_ports[name]}"
            cluster = [f"--cluster.listen-address={listen}", f"--cluster.advertise-address={listen}"]
            cluster += [f"--cluster.peer=127.0.0.1:{p}" for n, p in self.cluster_ports.items() if n != name]
            if self.timings.peer_timeout:
                cluster.append(f"--cluster.peer-timeout={self.timings.peer_timeout}")
        else:
            cluster = ["--cluster.listen-address="]  # no gossip port: a single local instance
        self._run(
            name,
            [
                ALERTMANAGER_BIN,
                f"--config.file={self.workdir / 'alertmanager' / 'alertmanager.yml'}",
                f"--storage.path={data}",
                f"--web.listen-address=127.0.0.1:{self.ports[name]}",
                *cluster,
            ],
            f"{self.url(name)}/-/ready",
        )

    def start_demo(self) -> None:
        # Traces only where asked: an inherited OTLP endpoint would export somewhere unintended.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
        env.update(self.demo_env)
        self._run(
            "demo",
            [
                sys.executable,
                "-m",
                "seawall",
                "demo",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.demo_port),
                "--traffic-rate",
                str(self.traffic_rate),
                "--log-level",
                "warning",
            ],
            f"{self.demo_url}/health",
            env=env,
        )

    def stop_demo(self) -> None:
        process = self.processes.pop("demo", None)
        if process is not None:
            process.stop()

    def start_prometheus(self, name: str = "prometheus", replica: str = "a") -> None:
        data = self.workdir / f"{name}-data"
        data.mkdir(parents=True, exist_ok=True)
        self._run(
            name,
            [
                PROMETHEUS_BIN,
                f"--config.file={self.workdir / name / 'prometheus.yml'}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{self.ports[name]}",
                "--enable-feature=exemplar-storage",
                "--enable-feature=expand-external-labels",  # replica: ${PROMETHEUS_REPLICA}
                "--web.enable-lifecycle",
            ],
            f"{self.url(name)}/-/ready",
            env={**os.environ, "PROMETHEUS_REPLICA": replica},
        )

    def stop(self) -> None:
        """Stop every process, newest first (Prometheus before the things it talks to)."""
        for name in reversed(list(self.processes)):
            self.processes.pop(name).stop()

    def kill(self, name: str) -> int:
        """SIGKILL process `name` (a lost node: no clean shutdown, no goodbye to its peers); its pid."""
        return self.processes.pop(name).kill()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queries -------------------------------------------------------------------------------------
    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant PromQL query; ValueError carrying Prometheus' message if it does not parse."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, body = http("GET", url)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise ValueError(f"{expr!r}: {doc.get('errorType')}: {doc.get('error')}")
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def firing(self) -> set[tuple[str, str]]:
        """(alertname, breaker or '') of every alert Prometheus has firing now."""
        status, body = http("GET", f"{self.prometheus_url}/api/v1/alerts")
        alerts = json.loads(body)["data"]["alerts"] if status == 200 else []
        return {
            (a["labels"]["alertname"], a["labels"].get("breaker", ""))
            for a in alerts
            if a["state"] == "firing"
        }

    def chaos(self, dependency: str, **settings: Any) -> dict[str, Any]:
        status, body = http("POST", f"{self.demo_url}/chaos/{dependency}", settings)
        if status != 200:
            raise RuntimeError(f"chaos {dependency} {settings}: HTTP {status} {body[:200]!r}")
        result: dict[str, Any] = json.loads(body)
        return result

    def exemplars(self, selector: str, window: float = 300.0) -> list[dict[str, Any]]:
        """Exemplars Prometheus stored for `selector` over the last `window` seconds."""
        now = time.time()
        params = {"query": selector, "start": f"{now - window:.3f}", "end": f"{now:.3f}"}
        status, body = http(
            "GET", f"{self.prometheus_url}/api/v1/query_exemplars?" + urllib.parse.urlencode(params)
        )
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise ValueError(f"{selector!r}: {doc.get('error')}")
        return [e for series in doc["data"] for e in series["exemplars"]]

    def alertmanager_metric(self, name: str, **labels: str) -> float:
        """Sum of one metric's samples (matching `labels`) on Alertmanager's own /metrics."""
        _, body = http("GET", f"{self.alertmanager_url}/metrics")
        return sum_samples(body.decode(), name, labels)


def sum_samples(text: str, name: str, labels: dict[str, str]) -> float:
    """Sum the samples of `name` in Prometheus text format whose labels include `labels`."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})?\s+(\S+)")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total
