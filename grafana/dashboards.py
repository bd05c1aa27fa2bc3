"""Generate seawall's Grafana dashboards from code (`make dashboards`).

Dashboards written by hand drift from the metric contract; built here with grafana-foundation-sdk
they are reviewed as Python, and `tests/test_grafana.py` fails when the committed JSON in
`grafana/dashboards/` differs from what this file produces. Every query names the Prometheus
datasource by its fixed uid (provisioned in `grafana/provisioning/datasources/`), never
`${DS_PROMETHEUS}`, so the files load as they are.

Run: `python grafana/dashboards.py [--check]` (`--check` exits 1 if the files are stale).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

PROMETHEUS_UID = "seawall-prometheus"
TEMPO_UID = "seawall-tempo"
OUT_DIR = Path(__file__).resolve().parent / "dashboards"
PROM = dm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)

# Reference line on the failure-rate panels: a common failure_rate_threshold (breakers default to none).
FAILURE_RATE_THRESHOLD = 0.5
# Service filter: the `service` target label from prometheus/prometheus.yml (the alerts group by it).
SVC = 'service=~"$service"'
RATE = "$__rate_interval"

# state code -> (state, colour): the state timelines show one coloured band per breaker.
STATES: list[tuple[str, str]] = [
    ("closed", "green"),
    ("half_open", "yellow"),
    ("open", "red"),
    ("forced_open", "purple"),
    ("disabled", "text"),
]


def query(
    expr: str,
    legend: str = "",
    *,
    ref: str = "A",
    instant: bool = False,
    exemplar: bool = False,
    fmt: pm.PromQueryFormat | None = None,
) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(PROM)
    if legend:
        q = q.legend_format(legend)
    q = q.instant() if instant else q.range()
    if exemplar:
        q = q.exemplar(True)
    if fmt is not None:
        q = q.format(fmt)
    return q


def state_code_expr(selector: str) -> str:
    """One number per breaker: 0 closed, 1 half_open, 2 open, 3 forced_open, 4 disabled."""
    parts = [
        f'seawall_circuit_breaker_state{{{selector}, state="{state}"}} * {code}'
        for code, (state, _colour) in enumerate(STATES)
    ]
    return "max by (breaker) (\n  " + "\n  or ".join(parts) + "\n)"


def state_mappings() -> list[dm.ValueMapping]:
    options = {
        str(code): dm.ValueMappingResult(text=state, color=colour, index=code)
        for code, (state, colour) in enumerate(STATES)
    }
    return [dm.ValueMap(options=options)]


def legend(mode: cm.LegendDisplayMode = cm.LegendDisplayMode.LIST) -> cb.VizLegendOptions:
    return (
        cb.VizLegendOptions()
        .display_mode(mode)
        .placement(cm.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs([])
    )


def ts(
    title: str,
    description: str,
    *targets: prometheus.Dataquery,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    stacked: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROM)
        .unit(unit)
        .span(w)
        .height(h)
        .fill_opacity(10)
        .line_width(1)
        .legend(legend())
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=colour) for value, colour in steps])
    )


def failure_rate_panel(selector: str, w: int) -> timeseries.Panel:
    return (
        ts(
            "Failure rate vs threshold",
            "seawall_circuit_breaker_failure_ratio: the share of failed calls in each breaker's current "
            f"window. The dashed line marks {FAILURE_RATE_THRESHOLD:g}, a common failure_rate_threshold; a "
            "breaker configured with one trips when its rate crosses it with minimum_calls in the window.",
            query(f"seawall_circuit_breaker_failure_ratio{{{selector}}}", "{{breaker}}"),
            unit="percentunit",
            w=w,
        )
        .min(0)
        .max(1)
        .thresholds(thresholds((None, "green"), (FAILURE_RATE_THRESHOLD, "red")))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
    )


def latency_panel(
    selector: str, by: str, w: int, title: str = "Call latency percentiles"
) -> timeseries.Panel:
    bucket = f"seawall_circuit_breaker_call_duration_seconds_bucket{{{selector}}}"
    targets = [
        query(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({bucket}[{RATE}])))",
            f"p{int(q * 100)} {{{{{by}}}}}",
            ref=ref,
            exemplar=True,
        )
        for ref, q in (("A", 0.5), ("B", 0.95), ("C", 0.99))
    ]
    return ts(
        title,
        "p50/p95/p99 of seawall_circuit_breaker_call_duration_seconds. Exemplar dots carry trace ids: "
        "click one to open the trace in Tempo.",
        *targets,
        unit="s",
        w=w,
    )


def state_timeline(selector: str, w: int, title: str = "Breaker states") -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title(title)
        .description(
            "seawall_circuit_breaker_state folded into one band per breaker: closed (green), half_open "
            "(yellow), open (red), forced_open (purple), disabled (grey)."
        )
        .datasource(PROM)
        .span(w)
        .height(8)
        .mappings(state_mappings())
        .thresholds(thresholds((None, "green")))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .show_value(cm.VisibilityMode.NEVER)
        .with_target(query(state_code_expr(selector), "{{breaker}}"))
    )


def service_variable(multi: bool) -> db.QueryVariable:
    var = (
        db.QueryVariable("service")
        .label("Service")
        .datasource(PROM)
        .query({"query": "label_values(seawall_build_info, service)", "refId": "service"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        var = var.multi(True).include_all(True).all_value(".*")
    return var


def seawall_dashboard(title: str, uid: str, description: str) -> db.Dashboard:
    """A dashboard with the settings every seawall dashboard shares (tags, time range, refresh,
    shared crosshair), so the three cannot drift apart."""
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["seawall", "resilience"])
        .editable()
        .time("now-30m", "now")
        .refresh("10s")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
    )


def seawall_link(title: str) -> db.DashboardLink:
    """A dropdown of the other seawall dashboards that keeps the time range and the variables."""
    return (
        db.DashboardLink(title)
        .type(dm.DashboardLinkType.DASHBOARDS)
        .tags(["seawall"])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    )


def overview() -> db.Dashboard:
    """Every breaker, retry, error source and feature of the selected services on one page."""
    sel = SVC
    calls = "seawall_circuit_breaker_calls_total"
    dash = (
        seawall_dashboard(
            "seawall: overview",
            "seawall-overview",
            "Breakers, retries, errors, features and firing alerts of services instrumented with seawall.",
        )
        .with_variable(service_variable(multi=True))
        .link(seawall_link("Breaker drill-down"))
        .with_row(db.Row("Circuit breakers"))
        .with_panel(state_timeline(sel, 12))
        .with_panel(
            ts(
                "Calls by outcome",
                "Rate of breaker-guarded calls per outcome: success, failure, rejected (short-circuited "
                "while open) and ignored (exceptions the breaker does not count).",
                query(f"sum by (outcome) (rate({calls}{{{sel}}}[{RATE}]))", "{{outcome}}"),
                unit="reqps",
                stacked=True,
            )
        )
        .with_panel(
            ts(
                "Rejection rate",
                "Share of calls each breaker rejected without calling the dependency: what users feel "
                "as fast failures or fallbacks while a breaker is open.",
                query(
                    f'sum by (breaker) (rate({calls}{{{sel}, outcome="rejected"}}[{RATE}]))\n'
                    f"/ sum by (breaker) (rate({calls}{{{sel}}}[{RATE}]))",
                    "{{breaker}}",
                ),
                unit="percentunit",
                w=8,
            )
            .min(0)
            .max(1)
        )
        .with_panel(failure_rate_panel(sel, 8))
        .with_panel(latency_panel(sel, "breaker", 8))
        .with_row(db.Row("Retries and errors"))
        .with_panel(
            ts(
                "Retries by outcome",
                "seawall_retry_calls_total per outcome: success_with_retry means a retry saved the call; "
                "failed_with_retry means it gave up after retrying.",
                query(f"sum by (outcome) (rate(seawall_retry_calls_total{{{sel}}}[{RATE}]))", "{{outcome}}"),
                query(
                    f"sum by (retry) (rate(seawall_retries_total{{{sel}}}[{RATE}]))",
                    "re-attempts {{retry}}",
                    ref="B",
                ),
                unit="ops",
                w=8,
            )
        )
        .with_panel(
            ts(
                "Errors by category",
                "seawall_errors_total by category (transient, permanent, rate_limit, auth, validation, "
                "unknown): transient errors are worth retrying, the rest are not.",
                query(f"sum by (category) (rate(seawall_errors_total{{{sel}}}[{RATE}]))", "{{category}}"),
                unit="ops",
                w=8,
                stacked=True,
            )
        )
        .with_panel(
            instant_table(
                "Top error sources",
                "The ten (source, error_type) pairs with the most errors in the selected time range.",
                "topk(10, sum by (source, error_type, category) "
                f"(increase(seawall_errors_total{{{sel}}}[$__range])))",
                {"excludeByName": {"Time": True}, "renameByName": {"Value": "errors"}},
            ).sort_by([cb.TableSortByFieldState().display_name("errors").desc(True)])
        )
        .with_row(db.Row("Features and alerts"))
        .with_panel(
            statetimeline.Panel()
            .title("Features")
            .description(
                "seawall_feature_enabled: 1 while a feature serves its primary path, 0 while it "
                "serves fallbacks (switched off by its breaker or by an operator)."
            )
            .datasource(PROM)
            .span(8)
            .height(8)
            .mappings(
                [
                    dm.ValueMap(
                        options={
                            "0": dm.ValueMappingResult(text="off (fallback)", color="red", index=0),
                            "1": dm.ValueMappingResult(text="on", color="green", index=1),
                        }
                    )
                ]
            )
            .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
            .thresholds(thresholds((None, "red"), (1, "green")))
            .show_value(cm.VisibilityMode.NEVER)
            .with_target(query(f"max by (feature) (seawall_feature_enabled{{{sel}}})", "{{feature}}"))
        )
        .with_panel(
            ts(
                "Fallbacks by feature and reason",
                "seawall_fallbacks_total: answers served from a fallback, by reason (disabled, "
                "circuit_open, error, stale).",
                query(
                    f"sum by (feature, reason) (rate(seawall_fallbacks_total{{{sel}}}[{RATE}]))",
                    "{{feature}} {{reason}}",
                ),
                unit="ops",
                w=8,
                stacked=True,
            )
        )
        .with_panel(
            instant_table(
                "Firing alerts",
                'ALERTS{alertstate="firing"}: what Prometheus is sending to Alertmanager now.',
                'sum by (alertname, severity, breaker) (ALERTS{alertstate="firing"})',
                {"excludeByName": {"Time": True, "Value": True}},
            ).no_value("no alerts firing")
        )
        .with_row(db.Row("Instrumentation health"))
        .with_panel(
            health_stat(
                "Label overflow",
                "seawall_label_overflow_total: label values collapsed to _other past the cardinality cap. "
                "Anything above 0 means some names are hidden.",
                f"sum(increase(seawall_label_overflow_total{{{sel}}}[$__range])) or vector(0)",
            )
        )
        .with_panel(
            health_stat(
                "Instrumentation errors",
                "seawall_instrumentation_errors_total: listener failures caught before reaching your code.",
                f"sum(increase(seawall_instrumentation_errors_total{{{sel}}}[$__range])) or vector(0)",
            )
        )
        .with_panel(
            health_stat(
                "Admin actions",
                "seawall_admin_actions_total: operator actions through the admin API (force open, reset, "
                "disable, feature toggles) in the time range.",
                f"sum(increase(seawall_admin_actions_total{{{sel}}}[$__range])) or vector(0)",
                warn=1,
            )
        )
        .with_panel(
            stat.Panel()
            .title("Targets up")
            .description("Scrape targets of the selected services that answered the last scrape.")
            .datasource(PROM)
            .span(6)
            .height(4)
            .thresholds(thresholds((None, "red"), (1, "green")))
            .with_target(query(f"sum(up{{{sel}}})", instant=True))
        )
    )
    return dash


def instant_table(title: str, description: str, expr: str, organize: dict[str, Any]) -> table.Panel:
    """A third-wide table of one instant query, its columns organized (hidden, renamed) as given."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(PROM)
        .span(8)
        .height(8)
        .with_target(query(expr, instant=True, fmt=pm.PromQueryFormat.TABLE))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options=organize))
    )


def health_stat(title: str, description: str, expr: str, warn: float = 1) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROM)
        .span(6)
        .height(4)
        .decimals(0)
        .thresholds(thresholds((None, "green"), (warn, "orange")))
        .with_target(query(expr, instant=True))
    )


def breaker_variable(name: str = "breaker", label: str = "Breaker", selector: str = SVC) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(PROM)
        .query(
            {"query": f"label_values(seawall_circuit_breaker_state{{{selector}}}, breaker)", "refId": name}
        )
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


# An HTTP client's breakers are named `<client>@<scheme>:<host>:<port>` (one per upstream); its
# retry, bulkhead and feature carry the client's name alone.
CLIENT_OF_BREAKER = "/^([^@]+)/"


def client_variable() -> db.QueryVariable:
    """Hidden: the selected breaker's name up to its `@` (the whole name for a plain breaker), so
    the drill-down finds the retry and feature of an HTTP client's per-upstream breaker."""
    return (
        breaker_variable("client", "Client", 'service=~"$service", breaker="$breaker"')
        .regex(CLIENT_OF_BREAKER)
        .hide(dm.VariableHide.HIDE_VARIABLE)
    )


def drilldown() -> db.Dashboard:
    """One breaker of one service, the error source of the same name, and the retry and feature
    of its client (the breaker's own name unless an HTTP client made it per upstream)."""
    sel = 'service=~"$service", breaker="$breaker"'
    by_retry = 'service=~"$service", retry="$client"'
    by_source = 'service=~"$service", source="$breaker"'
    by_feature = 'service=~"$service", feature="$client"'
    calls = "seawall_circuit_breaker_calls_total"
    transitions = "seawall_circuit_breaker_transitions_total"
    return (
        seawall_dashboard(
            "seawall: breaker drill-down",
            "seawall-breaker",
            "One circuit breaker in depth: state, calls, latency, transitions, and its retry, "
            "feature and errors (matched by name).",
        )
        .with_variable(service_variable(multi=False))
        .with_variable(breaker_variable())
        .with_variable(client_variable())
        .link(seawall_link("Overview"))
        .with_panel(
            stat.Panel()
            .title("State now")
            .description("The breaker's current state.")
            .datasource(PROM)
            .span(6)
            .height(6)
            .mappings(state_mappings())
            .thresholds(thresholds((None, "green"), (1, "yellow"), (2, "red"), (3, "purple"), (4, "text")))
            .color_mode(cm.BigValueColorMode.BACKGROUND)
            .with_target(query(state_code_expr(sel), "{{breaker}}", instant=True))
        )
        .with_panel(state_timeline(sel, 18, title="State over time"))
        .with_panel(
            ts(
                "Calls by outcome",
                "This breaker's calls per outcome.",
                query(f"sum by (outcome) (rate({calls}{{{sel}}}[{RATE}]))", "{{outcome}}"),
                unit="reqps",
                stacked=True,
            )
        )
        .with_panel(failure_rate_panel(sel, 12))
        .with_panel(latency_panel(sel, "outcome", 12, title="Latency percentiles by outcome"))
        .with_panel(
            ts(
                "State transitions",
                "seawall_circuit_breaker_transitions_total: each step is one transition (e.g. closed->open).",
                query(
                    f"sum by (from_state, to_state) (increase({transitions}{{{sel}}}[{RATE}]))",
                    "{{from_state}} -> {{to_state}}",
                ),
                unit="short",
            )
        )
        .with_panel(
            ts(
                "Retry of the same name",
                "Calls and re-attempts (by error type) of the retry named like the breaker (like its "
                "HTTP client, for a breaker named client@upstream).",
                query(
                    f"sum by (outcome) (rate(seawall_retry_calls_total{{{by_retry}}}[{RATE}]))",
                    "{{outcome}}",
                ),
                query(
                    f"sum by (error_type) (rate(seawall_retries_total{{{by_retry}}}[{RATE}]))",
                    "re-attempt after {{error_type}}",
                    ref="B",
                ),
                unit="ops",
                w=8,
            )
        )
        .with_panel(
            ts(
                "Errors from this source",
                "seawall_errors_total with source = the breaker's name, by error type and category.",
                query(
                    f"sum by (error_type, category) (rate(seawall_errors_total{{{by_source}}}[{RATE}]))",
                    "{{error_type}} ({{category}})",
                ),
                unit="ops",
                w=8,
                stacked=True,
            )
        )
        .with_panel(
            ts(
                "Feature and fallbacks",
                "The feature named like the breaker (or its HTTP client): enabled (1/0) and fallbacks "
                "by reason.",
                query(
                    f"sum by (reason) (rate(seawall_fallbacks_total{{{by_feature}}}[{RATE}]))",
                    "fallback {{reason}}",
                ),
                query(
                    f"max(seawall_feature_enabled{{{by_feature}}})",
                    "enabled",
                    ref="B",
                ),
                unit="short",
                w=8,
            )
        )
    )


def limits() -> db.Dashboard:
    """Timeouts, bulkheads and rate limiters of the selected services (issue 10's metrics)."""
    sel = SVC

    def by_outcome(title: str, description: str, metric: str, label: str) -> timeseries.Panel:
        expr = f"sum by ({label}, outcome) (rate({metric}{{{sel}}}[{RATE}]))"
        return ts(
            title,
            description,
            query(expr, f"{{{{{label}}}}} {{{{outcome}}}}"),
            unit="reqps",
            w=8,
            stacked=True,
        )

    def p99(title: str, description: str, metric: str, label: str) -> timeseries.Panel:
        expr = f"histogram_quantile(0.99, sum by ({label}, le) (rate({metric}_bucket{{{sel}}}[{RATE}])))"
        return ts(title, description, query(expr, f"{{{{{label}}}}}"), unit="s", w=8)

    timed_out = (
        f'sum by (timeout) (rate(seawall_timeout_calls_total{{{sel}, outcome="timed_out"}}[{RATE}]))\n'
        f"/ sum by (timeout) (rate(seawall_timeout_calls_total{{{sel}}}[{RATE}]))"
    )
    errors = f"sum by (limiter) (rate(seawall_rate_limiter_backend_errors_total{{{sel}}}[{RATE}]))"
    return (
        seawall_dashboard(
            "seawall: timeouts, bulkheads, rate limiters",
            "seawall-limits",
            "How long calls may take, how many may run at once and how often: seawall's limits.",
        )
        .with_variable(service_variable(multi=True))
        .with_row(db.Row("Timeouts"))
        .with_panel(
            by_outcome(
                "Timeout calls by outcome",
                "Calls through each timeout: success, failure (failed within the budget) and timed_out "
                "(async: cancelled at the deadline; sync: ended after it).",
                "seawall_timeout_calls_total",
                "timeout",
            )
        )
        .with_panel(
            ts(
                "Timed-out share",
                "Share of each timeout's calls that overran their budget (CallTimeoutsHigh above 5%).",
                query(timed_out, "{{timeout}}"),
                unit="percentunit",
                w=8,
            )
            .min(0)
            .max(1)
        )
        .with_panel(
            p99(
                "Call duration p99",
                "99th percentile of calls through each timeout, timed-out ones included: compare it with "
                "the budget.",
                "seawall_timeout_call_duration_seconds",
                "timeout",
            )
        )
        .with_row(db.Row("Bulkheads"))
        .with_panel(
            ts(
                "Slots in use",
                "Calls inside each bulkhead right now, and its capacity (summed over workers).",
                query(f"sum by (bulkhead) (seawall_bulkhead_in_flight{{{sel}}})", "in flight {{bulkhead}}"),
                query(
                    f"sum by (bulkhead) (seawall_bulkhead_capacity{{{sel}}})",
                    "capacity {{bulkhead}}",
                    ref="B",
                ),
                unit="short",
                w=8,
            )
        )
        .with_panel(
            by_outcome(
                "Bulkhead calls by outcome",
                "Admitted and rejected (BulkheadFullError) calls per bulkhead.",
                "seawall_bulkhead_calls_total",
                "bulkhead",
            )
        )
        .with_panel(
            p99(
                "Wait for a slot p99",
                "99th percentile of the time calls waited for a slot (0 when one was free).",
                "seawall_bulkhead_wait_seconds",
                "bulkhead",
            )
        )
        .with_row(db.Row("Rate limiters"))
        .with_panel(
            by_outcome(
                "Rate limiter calls by outcome",
                "Admitted and rejected (RateLimitedError, 429) calls per limiter.",
                "seawall_rate_limiter_calls_total",
                "limiter",
            )
        )
        .with_panel(
            ts(
                "Available tokens",
                "Calls each local limiter would admit right now (shared Redis limiters do not report it).",
                query(f"sum by (limiter) (seawall_rate_limiter_available_tokens{{{sel}}})", "{{limiter}}"),
                unit="short",
                w=8,
            )
        )
        .with_panel(
            ts(
                "Backend up and errors",
                "1 while the limiter's backend decides (always 1 for local ones); decisions it could not "
                "make per second, settled by the failure policy instead.",
                query(f"min by (limiter) (seawall_rate_limiter_backend_up{{{sel}}})", "up {{limiter}}"),
                query(errors, "errors/s {{limiter}}", ref="B"),
                unit="short",
                w=8,
            )
        )
    )


def upstreams() -> db.Dashboard:
    """One repeated row per upstream host of the HTTP clients (their per-authority breakers):
    what each host answers, how fast, and how it fails (statuses, resets, timeouts)."""
    sel = 'service=~"$service", breaker="$upstream"'
    calls = "seawall_circuit_breaker_calls_total"
    return (
        seawall_dashboard(
            "seawall: HTTP upstreams",
            "seawall-http",
            "One row per upstream host of the seawall.httpx / seawall.requests clients: the state, "
            "calls, latency and errors of its breaker (named client@scheme:host:port).",
        )
        .with_variable(service_variable(multi=True))
        .with_variable(
            breaker_variable("upstream", "Upstream", 'service=~"$service", breaker=~".+@.+"')
            .multi(True)
            .include_all(True)
        )
        .link(seawall_link("Overview"))
        .with_row(db.Row("Upstream $upstream").repeat("upstream"))
        .with_panel(state_timeline(sel, 24, title="State"))
        .with_panel(
            ts(
                "Calls by outcome",
                "Attempts at this host per outcome: failure (5xx, 408, resets, timeouts), ignored "
                "(429: the host pacing us, never a failure), rejected (the breaker open).",
                query(f"sum by (outcome) (rate({calls}{{{sel}}}[{RATE}]))", "{{outcome}}"),
                unit="reqps",
                w=8,
                stacked=True,
            )
        )
        .with_panel(latency_panel(sel, "outcome", 8, title="Attempt latency by outcome"))
        .with_panel(
            ts(
                "Errors by type",
                "seawall_errors_total recorded by this host's breaker: UpstreamStatusError for error "
                "statuses, the client library's errors for resets and hangs, CallTimeoutError for "
                "attempts cut by the attempt timeout.",
                query(
                    f'sum by (error_type) (rate(seawall_errors_total{{{SVC}, source="$upstream"}}[{RATE}]))',
                    "{{error_type}}",
                ),
                unit="ops",
                w=8,
                stacked=True,
            )
        )
    )


DASHBOARDS = {
    "seawall-overview.json": overview,
    "seawall-breaker.json": drilldown,
    "seawall-limits.json": limits,
    "seawall-http.json": upstreams,
}
ALL_DASHBOARDS = DASHBOARDS


def render(name: str) -> str:
    """The JSON text of one dashboard, as committed."""
    model = ALL_DASHBOARDS[name]().build()
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[str, str]:
    return {name: render(name) for name in ALL_DASHBOARDS}


def iter_targets(model: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) for every Prometheus query of a dashboard JSON model, rows included."""
    for panel in model.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                if "expr" in target:
                    yield inner.get("title", ""), target["expr"]


def expand(expr: str, variables: dict[str, str], rate_interval: str = "1m", range_: str = "5m") -> str:
    """The expr with template variables replaced, as Grafana would send it (used by the tests)."""
    out = expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
    for name in sorted(variables, key=len, reverse=True):
        out = out.replace(f"${name}", variables[name])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    stale = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        path = args.out / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text)
    verb = "stale" if args.check else "written"
    for name in stale:
        print(f"{verb}: {args.out / name}")
    if not stale:
        print(f"up to date: {', '.join(sorted(ALL_DASHBOARDS))}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
