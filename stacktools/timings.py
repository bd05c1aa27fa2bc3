"""How long an alert takes to reach a receiver, and to resolve, from the configured timings.

The formulas of docs/alerts.md ("Timing"), in code so the end-to-end tests check the path they measure
against the same arithmetic the table was derived from. All results are in seconds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from stacktools.harness import ROOT, Timings

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def seconds(duration: str) -> float:
    """A Prometheus/Alertmanager duration ("1m30s", "5m", "500ms") in seconds."""
    parts = _PART.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def shipped_timings(root: Path = ROOT) -> Timings:
    """The intervals the shipped prometheus.yml and alertmanager.yml use (15s: Alertmanager's default)."""
    prometheus = yaml.safe_load((root / "prometheus" / "prometheus.yml").read_text())["global"]
    route = yaml.safe_load((root / "alertmanager" / "alertmanager.yml").read_text())["route"]
    return Timings(
        scrape_interval=prometheus["scrape_interval"],
        evaluation_interval=prometheus["evaluation_interval"],
        group_wait=route["group_wait"],
        group_interval=route["group_interval"],
        repeat_interval=route["repeat_interval"],
        peer_timeout="15s",
    )


def _effective(timings: Timings, root: Path) -> dict[str, float]:
    base = shipped_timings(root)
    return {
        key: seconds(getattr(timings, key) or getattr(base, key))
        for key in ("scrape_interval", "evaluation_interval", "group_wait", "group_interval")
    }


def time_to_fire(
    timings: Timings, rule_for: str, window: str = "0s", root: Path = ROOT
) -> tuple[float, float]:
    """(fastest, worst case) from a fault to the first notification of a new alert group.

    fastest = window-to-threshold (0 for state alerts) + for + group_wait: a scrape and an evaluation
    happen right after the fault. Worst = scrape + window + evaluation + for rounded up to whole
    evaluations + group_wait: each step just missed. `window` is the time the expression needs to
    cross its threshold after a full fault (at most the range of its rate window)."""
    t = _effective(timings, root)
    for_ = seconds(rule_for)
    evaluations = math.ceil(for_ / t["evaluation_interval"]) * t["evaluation_interval"]
    fastest = seconds(window) + for_ + t["group_wait"]
    worst = t["scrape_interval"] + seconds(window) + t["evaluation_interval"] + evaluations + t["group_wait"]
    return fastest, worst


def time_to_resolve(timings: Timings, window: str = "0s", root: Path = ROOT) -> float:
    """Worst case from healing to the RESOLVED notification: scrape + window + evaluation + group_interval.

    `window` is how long the expression stays true after the fault is gone (0 for state alerts, the
    short gate window for gated rate alerts); Alertmanager sends resolutions at the group's next
    group_interval tick."""
    t = _effective(timings, root)
    return t["scrape_interval"] + seconds(window) + t["evaluation_interval"] + t["group_interval"]


# Per alert (and severity, where one name has two rules): how long its expression takes to become
# true after a full fault (every call failing or rejected), and how long it stays true once the
# fault is gone. These are read off the expressions in rules/ (rate windows, gates, thresholds).
WINDOWS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("CircuitBreakerOpen", "critical"): ("0s", "0s", "breaker state"),
    ("CircuitBreakerFlapping", "warning"): ("0s", "15m", "from the 3rd trip; quiet 15m after the last"),
    ("CircuitBreakerHalfOpenStuck", "warning"): ("1m", "0s", "a whole minute half_open, then `for`"),
    ("CircuitBreakerForcedOpen", "info"): ("0s", "0s", "breaker state; never sent"),
    ("CircuitBreakerSharedStateDown", "warning"): ("0s", "0s", "the shared breaker's up gauge"),
    ("HighRejectionRate", "warning"): ("30s", "0s", "10% of the 5m window; stops when the breaker closes"),
    ("HighRetryRate", "warning"): ("5m", "1m", "up to the 5m window (2.5m if every call retries once)"),
    ("RetryExhaustion", "warning"): ("15s", "1m", "5% of the 5m window"),
    ("ErrorRateHigh", "warning"): ("5m", "1m", "up to the 5m window, by error rate"),
    ("ErrorBudgetBurn", "critical"): ("52s", "5m", "1.44% of the 1h window; gated on 5m"),
    ("ErrorBudgetBurn", "warning"): ("4m20s", "30m", "0.3% of the 1d window; gated on 30m"),
    ("FeatureDegraded", "warning"): ("0s", "0s", "feature switch"),
    ("ExporterDown", "warning"): ("0s", "0s", "`up`"),
    ("InstrumentationErrors", "warning"): ("0s", "10m", "the first error; quiet 10m after the last"),
    ("LabelCardinalityOverflow", "warning"): ("0s", "30m", "the first refused value; quiet 30m after"),
    ("AdminAccessDenied", "info"): ("0s", "10m", "the 6th refusal in 10m; never sent"),
    ("BulkheadSaturated", "warning"): ("4m30s", "30s", "90% of the 5m average of slots in use"),
    ("BulkheadRejections", "warning"): ("15s", "1m", "5% of the 5m window; gated on 1m"),
    ("CallTimeoutsHigh", "warning"): ("15s", "1m", "5% of the 5m window; gated on 1m"),
    ("RateLimiterRejections", "warning"): ("30s", "1m", "10% of the 5m window; gated on 1m"),
    ("RateLimiterBackendDown", "warning"): ("0s", "0s", "the backend's up gauge"),
    ("TaskFailedPermanently", "critical"): ("0s", "0s", "task state: the failure that spends the budget"),
    ("TaskRestartingRepeatedly", "warning"): ("0s", "15m", "from the 3rd restart; quiet 15m after the last"),
    ("TaskHeartbeatStale", "warning"): ("5s", "0s", "heartbeat_timeout after the last beat (demo: 5 s)"),
    ("TaskHeartbeatStale", "critical"): ("25s", "0s", "5 x heartbeat_timeout after the last beat"),
}


def shipped_alerts(root: Path = ROOT) -> list[tuple[str, str, str]]:
    """(alertname, severity, for) of every shipped alert rule, in file order."""
    out = []
    for path in sorted((root / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    out.append((rule["alert"], rule["labels"]["severity"], rule.get("for", "0s")))
    return out


def _minutes(value: float) -> str:
    return f"{value / 60:.1f} min" if value >= 60 else f"{value:.0f} s"


def timing_table(timings: Timings | None = None, root: Path = ROOT) -> str:
    """The Markdown table of docs/alerts.md: each alert's fastest and worst-case time to its first
    notification and worst-case time to its resolved notification, with the shipped timings."""
    timings = timings or shipped_timings(root)
    rows = [
        "| alert | severity | `for` | true after a full fault | to fire: fastest / worst | "
        "true after healing | to resolve: worst | why |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, severity, for_ in shipped_alerts(root):
        fire_window, resolve_window, why = WINDOWS[(name, severity)]
        fastest, worst = time_to_fire(timings, for_, fire_window, root)
        resolve = time_to_resolve(timings, resolve_window, root)
        rows.append(
            f"| {name} | {severity} | {for_} | {fire_window} | {_minutes(fastest)} / {_minutes(worst)} | "
            f"{resolve_window} | {_minutes(resolve)} | {why} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(timing_table())
