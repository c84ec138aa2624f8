"""deploy/ is checked by the tools made for each file, plus what those tools cannot know about us.

- docker-compose.yml: the Compose Specification's JSON schema (check-jsonschema's vendored copy,
  offline) and `docker-compose config` where that binary exists;
- k8s/*.yaml: kubernetes-validate --strict (bundled OpenAPI schemas, offline);
- prometheus/: `promtool check config`, `promtool check rules`, `promtool test rules` (Debian's
  `prometheus` package), and every PromQL query of the Grafana dashboard through promtool's parser;
- every HITL_* variable they set is a real setting, and the values load;
- the cluster shapes the fault suite proved (tests/faults/test_rabbitmq_cluster.py,
  test_store_failover.py): 3 RabbitMQ nodes every process is given, PostgreSQL with a synchronous
  standby; the operators' custom resources (RabbitmqCluster, CloudNativePG's Cluster) have no
  schema offline, so what we rely on in them is checked here.
A missing tool skips its test with the package to install; CI installs all of them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
PROM = DEPLOY / "prometheus"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
PROCESSES = {"ingest": 8080, "decider": 8081, "poller": 8082, "console": 8090, "notifier": 8083}
K8S_VERSION = "1.30"
OPERATOR_APIS = ("rabbitmq.com/", "postgresql.cnpg.io/")  # custom resources: checked below, not by kubernetes-validate
RABBIT_NODES = ("rabbitmq-0", "rabbitmq-1", "rabbitmq-2")


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed here (CI installs it: {package})")
    return path


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # PyYAML resolves the anchors and `<<` merges


def k8s_docs() -> list[dict]:
    return [d for f in K8S_FILES for d in yaml.safe_load_all(f.read_text()) if d]


def known_settings() -> set[str]:
    from shared.settings import Settings

    names = {f"HITL_{n.upper()}" for n in Settings.model_fields}
    try:
        from services.console.config import ConsoleSettings
    except ImportError:  # the console is not in this tree yet
        names |= {"HITL_CONSOLE_HOST", "HITL_CONSOLE_PORT", "HITL_CONSOLE_SECRET"}
    else:
        names |= {f"HITL_CONSOLE_{n.upper()}" for n in ConsoleSettings.model_fields}
    return names


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {k.strip(): v for k, v in pairs}


def assert_settings_load(env: dict[str, str], where: str, monkeypatch) -> None:
    unknown = sorted(k for k in env if k.startswith("HITL_") and k not in known_settings())
    assert not unknown, f"{where}: not settings: {unknown}"
    for key in [k for k in os.environ if k.startswith("HITL_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    from shared.settings import load_settings

    settings = load_settings()  # raises SettingsError naming the bad setting
    assert settings.database_url.startswith("postgresql+psycopg://"), f"{where}: replicas need PostgreSQL"
    assert settings.apps and settings.reviewers, where


# ---------------------------------------------------------------------- docker compose
def test_the_compose_file_follows_the_compose_specification():
    pytest.importorskip("check_jsonschema", reason="pip install check-jsonschema")
    out = run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_docker_compose_accepts_the_compose_file():
    binary = need("docker-compose", "apt-get install --no-install-recommends docker-compose")
    out = run([binary, "-f", str(COMPOSE), "config", "-q"], cwd=DEPLOY)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_runs_every_process_in_several_replicas_with_probes_and_real_settings(monkeypatch):
    services = compose()["services"]
    assert {*RABBIT_NODES, "postgres", "postgres-standby", "prometheus", "grafana"} <= set(services)
    for name, port in PROCESSES.items():
        svc = services[name]
        assert svc["command"] == ["python", "-m", f"services.{name}"]
        assert svc["deploy"]["replicas"] >= 2, name
        assert f":{port}/readyz" in " ".join(svc["healthcheck"]["test"]), name
        assert all(svc["depends_on"][n]["condition"] == "service_healthy" for n in RABBIT_NODES)
        env = {**env_file(DEPLOY / svc["env_file"]), **svc["environment"]}
        assert env[f"HITL_{name.upper()}_PORT"] == str(port) and env[f"HITL_{name.upper()}_HOST"] == "0.0.0.0"
        assert_settings_load(env, f"compose service {name}", monkeypatch)
        assert (ROOT / "services" / name / "__main__.py").exists() or name == "console", name
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    assert "rabbitmq_prometheus" in (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()
    assert "prometheus.tcp.port = 15692" in conf
    for node in RABBIT_NODES:
        assert any(v.startswith("./rabbitmq/rabbitmq.conf:") for v in services[node]["volumes"]), node
    # the services' user and password are the broker's
    user, password = re.search(r"default_user = (\S+)\ndefault_pass = (\S+)", conf).groups()
    assert services["ingest"]["environment"]["HITL_RABBITMQ_URL"].startswith(f"amqp://{user}:{password}@rabbitmq-0:")


def test_compose_runs_a_3_node_rabbitmq_cluster_and_every_process_is_given_every_node(monkeypatch):
    from shared.settings import load_settings

    services = compose()["services"]
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    assert "cluster_formation.peer_discovery_backend = classic_config" in conf
    listed = re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$", conf, re.M)
    assert sorted(listed) == sorted(services[n]["hostname"] for n in RABBIT_NODES) == list(RABBIT_NODES)
    cookies = {services[n]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] for n in RABBIT_NODES}
    assert len(cookies) == 1 and "-setcookie" in cookies.pop()  # one Erlang cookie: they can cluster
    assert len({v for n in RABBIT_NODES for v in services[n]["volumes"] if not v.startswith("./")}) == 3
    monkeypatch.setenv("HITL_RABBITMQ_URL", services["ingest"]["environment"]["HITL_RABBITMQ_URL"])
    settings = load_settings()
    assert [u.split("@")[1].split(":")[0] for u in settings.rabbitmq_nodes] == list(RABBIT_NODES)
    assert settings.quorum_group_size == 3


def test_compose_runs_postgresql_with_a_synchronous_standby_the_processes_follow(monkeypatch):
    from shared.settings import load_settings

    services = compose()["services"]
    primary, standby = services["postgres"], services["postgres-standby"]
    init = next(v for v in primary["volumes"] if "docker-entrypoint-initdb.d" in v).split(":")[0]
    script = next(v for v in standby["volumes"] if v.endswith(":/standby.sh:ro")).split(":")[0]
    for path in (init, script):
        assert (DEPLOY / path).exists(), path
        out = run(["sh", "-n", str(DEPLOY / path)])
        assert out.returncode == 0, out.stderr
    init_text, standby_text = (DEPLOY / init).read_text(), (DEPLOY / script).read_text()
    # the primary waits for the standby by the name the standby gives itself
    waits_for = re.search(r"synchronous_standby_names = '(\w+)'", init_text).group(1)
    assert f"cluster_name = '{waits_for}'" in standby_text
    assert "pg_basebackup" in standby_text and " -R " in standby_text
    assert standby["depends_on"]["postgres"]["condition"] == "service_healthy"
    monkeypatch.setenv("HITL_DATABASE_URL", services["ingest"]["environment"]["HITL_DATABASE_URL"])
    url = load_settings().database_url
    assert "host=postgres:5432&host=postgres-standby:5432" in url and "target_session_attrs=read-write" in url


def test_compose_mounts_the_prometheus_and_grafana_files_that_exist():
    services = compose()["services"]
    for svc in ("prometheus", "grafana"):
        for volume in services[svc]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{svc} mounts missing {source}"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/hitl.yml").read_text())["providers"][0]
    assert any(v.split(":")[1].startswith(provider["options"]["path"]) for v in services["grafana"]["volumes"]
               if v.startswith("./grafana/hitl.json"))
    source = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    dashboard = json.loads((DEPLOY / "grafana/hitl.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}


def test_the_image_copies_what_exists_and_keeps_it_in_the_build_context():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for item in src.split():
            assert (ROOT / item).exists(), item
            assert f"!{item}" in ignore, f"{item} is not let through Dockerfile.dockerignore"
    assert "USER 10001" in dockerfile


# ---------------------------------------------------------------------- kubernetes
def test_the_kubernetes_manifests_validate_against_the_kubernetes_schemas():
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    docs = [d for d in k8s_docs() if not d["apiVersion"].startswith(OPERATOR_APIS)]
    assert docs
    for doc in docs:
        try:
            kv.validate(doc, K8S_VERSION, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.path}: {exc.message}")


def test_every_process_has_a_deployment_with_probes_limits_a_service_and_a_disruption_budget():
    docs = k8s_docs()
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    for name, port in PROCESSES.items():
        deploy = by_kind["Deployment"][f"hitl-{name}"]
        assert deploy["spec"]["replicas"] >= 2, name
        pod = deploy["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["ports"][0]["containerPort"] == port
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
        assert {e.get("configMapRef", e.get("secretRef"))["name"] for e in container["envFrom"]} == \
            {"hitl-config", "hitl-secrets"}
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        labels = pod["metadata"]["labels"]
        service = by_kind["Service"][f"hitl-{name}"]
        assert service["spec"]["selector"].items() <= labels.items() and service["spec"]["ports"][0]["port"] == port
        pdb = by_kind["PodDisruptionBudget"][f"hitl-{name}"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["spec"].get("maxUnavailable") == 1


def test_kubernetes_describes_3_rabbitmq_nodes_and_postgresql_with_a_synchronous_standby(monkeypatch):
    from shared.settings import load_settings

    by_kind = {d["kind"]: d for d in k8s_docs()}
    rabbit, pg, secret = by_kind["RabbitmqCluster"], by_kind["Cluster"], by_kind["Secret"]
    assert rabbit["apiVersion"] == "rabbitmq.com/v1beta1" and rabbit["spec"]["replicas"] == 3
    anti = rabbit["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == rabbit["metadata"]["name"]
    assert pg["apiVersion"] == "postgresql.cnpg.io/v1" and pg["spec"]["instances"] >= 2
    assert pg["spec"]["minSyncReplicas"] >= 1 and pg["spec"]["maxSyncReplicas"] >= pg["spec"]["minSyncReplicas"]
    assert pg["spec"]["bootstrap"]["initdb"]["database"] == "hitl"
    # the processes are given every RabbitMQ pod (the operator's names) and CloudNativePG's primary Service
    name, ns = rabbit["metadata"]["name"], rabbit["metadata"]["namespace"]
    monkeypatch.setenv("HITL_RABBITMQ_URL", secret["stringData"]["HITL_RABBITMQ_URL"])
    monkeypatch.setenv("HITL_DATABASE_URL", secret["stringData"]["HITL_DATABASE_URL"])
    settings = load_settings()
    hosts = [u.split("@")[1].split(":")[0] for u in settings.rabbitmq_nodes]
    assert hosts == [f"{name}-server-{i}.{name}-nodes.{ns}.svc" for i in range(3)]
    assert settings.quorum_group_size == 3
    assert f"@{pg['metadata']['name']}-rw.{pg['metadata']['namespace']}.svc:5432/hitl" in settings.database_url


def test_the_kubernetes_config_is_made_of_real_settings_that_load(monkeypatch):
    docs = {d["kind"]: d for d in k8s_docs() if d["kind"] in ("ConfigMap", "Secret")}
    env = {**docs["ConfigMap"]["data"], **docs["Secret"]["stringData"]}
    secret_keys = set(docs["Secret"]["stringData"])
    assert {"HITL_RABBITMQ_URL", "HITL_DATABASE_URL", "HITL_APPS", "HITL_REVIEWERS"} <= secret_keys
    assert_settings_load(env, "k8s ConfigMap + Secret", monkeypatch)
    for name, port in PROCESSES.items():
        assert env[f"HITL_{name.upper()}_PORT"] == str(port) and env[f"HITL_{name.upper()}_HOST"] == "0.0.0.0"


# ---------------------------------------------------------------------- prometheus
def test_promtool_accepts_the_prometheus_config():
    promtool = need("promtool", "apt-get install --no-install-recommends prometheus")
    out = run([promtool, "check", "config", "prometheus.yml"], cwd=PROM)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_accepts_the_alert_rules():
    promtool = need("promtool", "apt-get install --no-install-recommends prometheus")
    out = run([promtool, "check", "rules", "alerts.yml"], cwd=PROM)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_alert_rules_fire_in_their_promtool_unit_tests():
    promtool = need("promtool", "apt-get install --no-install-recommends prometheus")
    out = run([promtool, "test", "rules", "alerts.test.yml"], cwd=PROM)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_every_alert_has_a_unit_test_where_it_fires():
    alerts = {r["alert"] for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROM / "alerts.test.yml").read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c.get("exp_alerts")}
    assert alerts == fired, f"alerts never shown firing: {sorted(alerts - fired)}"
    for name in ("HitlCheckpointWaitingPastSLA", "HitlDeadLetterQueueNotEmpty", "HitlQueueWithoutConsumer",
                 "HitlDifyErrorRate", "HitlPollerLagging", "HitlResumeStuck"):
        assert name in alerts


def test_prometheus_scrapes_every_process_and_rabbitmqs_detailed_queue_metrics():
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for name, port in PROCESSES.items():
        (sd,) = jobs[f"hitl-{name}"]["dns_sd_configs"]
        assert sd["names"] == [name] and sd["port"] == port
    rabbit = jobs["rabbitmq"]
    assert rabbit["metrics_path"] == "/metrics/detailed"
    assert set(rabbit["params"]["family"]) == {"queue_coarse_metrics", "queue_consumer_count"}


def test_every_dashboard_query_parses(tmp_path):
    promtool = need("promtool", "apt-get install --no-install-recommends prometheus")
    from tests.unit.test_metrics_names import dashboard_exprs

    grafana_vars = {"$__rate_interval": "5m", "$__range": "6h", "$__interval": "1m", "$app": ".*"}
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        for var, value in grafana_vars.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run([promtool, "check", "rules", str(path)])
    assert out.returncode == 0, out.stdout + out.stderr
