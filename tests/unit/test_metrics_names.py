"""Every metric the dashboard and the alert rules read is one the code exports (checked, not hoped).

The exported names come from the prometheus registry after importing every module of `shared` and
`services`; the used names from the PromQL in deploy/grafana/hitl.json and deploy/prometheus/*.yml.
RabbitMQ's own metrics cannot be imported: they are listed here explicitly, as the
rabbitmq_prometheus plugin names them on /metrics/detailed.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
import re
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# rabbitmq_prometheus, GET /metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count
# (families queue_coarse_metrics: *_messages_ready, *_messages_unacked, *_messages;
#  queue_consumer_count: *_consumers), labels {vhost, queue}.
RABBITMQ_PLUGIN_METRICS = {
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_messages_unacked",
    "rabbitmq_detailed_queue_messages",
    "rabbitmq_detailed_queue_consumers",
}
PROMETHEUS_BUILTIN = {"up"}  # set by Prometheus itself for every scrape target
FORBIDDEN_LABEL = re.compile(r"(^|_)(id|ids|run|checkpoint|message|user|actor|token|correlation)($|_)")

PROMQL_WORDS = {
    # aggregations, functions, keywords and modifiers that look like identifiers
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan", "le", "vector", "scalar",
}


def exported_names() -> tuple[set[str], list[str]]:
    """Sample names the code registers (counter `x_total`, histogram `x_bucket`/`_sum`/`_count`, …)."""
    failed = []
    for package in ("shared", "services"):
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
            if info.name.endswith("__main__") or ".migrations" in info.name:
                continue
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # work in progress elsewhere in the tree: named in a failure message
                failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
    names = set(getattr(REGISTRY, "_names_to_collectors", {}))
    for collector in list(getattr(REGISTRY, "_collector_to_names", {})):
        describe = getattr(collector, "describe", None)
        for family in (describe() if describe else []):
            names.update(_sample_names(family.name, family.type))
    return names, failed


def _sample_names(name: str, kind: str) -> set[str]:
    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"],
                "summary": ["_sum", "_count", "_created"], "info": ["_info"]}.get(kind, [""])
    return {name + s for s in suffixes} | {name}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (string literals, label matchers, durations and grouping
    label lists removed first; what is left that is not a function or keyword is a metric name)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "hitl.json").read_text())
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.match(r"\s*(?:label_values|query_result)\((.*)\)\s*$", query or "")
        if m:
            exprs.append(m.group(1).rsplit(",", 1)[0] if query.strip().startswith("label_values") else m.group(1))
    return exprs


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def alert_test_series() -> list[str]:
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts.test.yml").read_text())
    return [s["series"] for t in tests["tests"] for s in t.get("input_series", [])]


@pytest.fixture(scope="module")
def exported():
    return exported_names()


def test_the_expression_parser_finds_metric_names_and_only_them():
    expr = ('histogram_quantile(0.95, sum by (app, le) (rate(hitl_x_seconds_bucket{app=~"$app", q="a_b"}[5m])))'
            ' / on(app) group_left max without (instance) (hitl_y{job="z"}) or vector(0) > bool up')
    assert metric_names(expr) == {"hitl_x_seconds_bucket", "hitl_y", "up"}


@pytest.mark.parametrize("source", ["dashboard", "alerts", "alert tests"])
def test_every_metric_used_by_the_dashboard_and_alerts_is_exported_by_the_code(source, exported):
    names, failed = exported
    exprs = {"dashboard": dashboard_exprs, "alerts": alert_exprs, "alert tests": alert_test_series}[source]()
    assert exprs, f"no expressions found in the {source}"
    used = set().union(*(metric_names(e) for e in exprs))
    missing = sorted(n for n in used
                     if n not in names and n not in RABBITMQ_PLUGIN_METRICS and n not in PROMETHEUS_BUILTIN)
    unknown_rabbit = sorted(n for n in used if n.startswith("rabbitmq_") and n not in RABBITMQ_PLUGIN_METRICS)
    assert not missing, f"{source} reads metrics no code exports: {missing}" + (
        f"\n(modules that failed to import: {failed})" if failed else "")
    assert not unknown_rabbit, f"rabbitmq metrics not in RABBITMQ_PLUGIN_METRICS: {unknown_rabbit}"


def test_the_dashboard_covers_the_human_step_the_pipeline_dify_and_runs():
    used = set().union(*(metric_names(e) for e in dashboard_exprs()))
    for name in ("hitl_open_checkpoints", "hitl_time_to_decision_seconds_bucket", "hitl_deadline_expiries_total",
                 "hitl_messages_consumed_total", "rabbitmq_detailed_queue_messages_ready",
                 "hitl_publish_confirm_seconds_bucket", "hitl_dify_calls_total", "hitl_dify_latency_seconds_bucket",
                 "hitl_tracked_runs"):
        assert name in used, name


def hitl_families():
    for collector in list(getattr(REGISTRY, "_collector_to_names", {})):
        describe = getattr(collector, "describe", None)
        for family in (describe() if describe else collector.collect()):
            if family.name.startswith("hitl_"):
                yield family, collector


def test_metric_names_say_the_unit_and_no_label_is_an_id(exported):
    seen = 0
    for family, collector in hitl_families():
        seen += 1
        labels = list(getattr(collector, "_labelnames", ()))
        labels += [label for name, _doc, names in getattr(collector, "specs", []) if name == family.name
                   for label in names]
        assert not [label for label in labels if FORBIDDEN_LABEL.search(label)], (family.name, labels)
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_bytes")), family.name
    assert seen >= 25


def test_the_deploy_readme_lists_every_hitl_metric(exported):
    documented = set(re.findall(r"`(hitl_[a-z0-9_]+)", (DEPLOY / "README.md").read_text()))
    missing = sorted(f.name for f, _ in hitl_families()
                     if f.name not in documented and f"{f.name}_total" not in documented)
    assert not missing, f"deploy/README.md does not list {missing}"


# ---------------------------------------------------------------------- the new observations
def test_store_gauges_read_open_checkpoints_and_tracked_runs_from_the_store(tmp_path):
    from shared import metrics
    from shared.store import Database
    from shared.store.tables import checkpoints, runs

    db = Database(f"sqlite:///{tmp_path / 'hitl.db'}")
    db.migrate()
    now = time.time()
    row = dict(kind="http", workflow_run_id="r1", node_id="draft", status="open", mode="hold", timeout_s=60,
               on_timeout="abort", assignees=[], max_rounds=5, updated_at=now, attach_count=0, published=True)
    with db.write() as conn:
        conn.execute(checkpoints.insert().values(id="a", app="demo", round=1, created_at=now - 90, deadline=now - 5,
                                                 **row))
        conn.execute(checkpoints.insert().values(id="b", app="demo", round=2, created_at=now - 10, deadline=now + 50,
                                                 **row))
        conn.execute(checkpoints.insert().values(id="c", app="demo", round=3, created_at=now - 500, deadline=now,
                                                 **{**row, "status": "resolved"}))
        for run_id, status, due in (("r1", "running", now - 30), ("r2", "running", now + 5), ("r3", "succeeded", None)):
            conn.execute(runs.insert().values(id=run_id, app="demo", status=status, source="track", next_poll_at=due,
                                              tracked_at=now, updated_at=now, streamed=False, stale_record=False,
                                              poll_failures=0))
    try:
        metrics.observe_store(db, checkpoints=True, runs=True)
        value = lambda name, **labels: REGISTRY.get_sample_value(name, labels)  # noqa: E731
        assert value("hitl_open_checkpoints", app="demo") == 2
        assert 89 <= value("hitl_open_checkpoint_oldest_age_seconds", app="demo") < 120
        assert value("hitl_checkpoints_overdue", app="demo") == 1
        assert value("hitl_tracked_runs", app="demo", status="running") == 2
        assert value("hitl_tracked_runs", app="demo", status="succeeded") == 1
        assert 29 <= value("hitl_poll_lag_seconds", app="demo") < 60
    finally:
        metrics.open_checkpoint_gauges.db = metrics.run_gauges.db = None
        metrics.open_checkpoint_gauges._cache = metrics.run_gauges._cache = (0.0, {})
        db.dispose()


def test_an_unbound_store_gauge_has_no_samples_and_a_failing_store_is_counted_not_raised():
    from shared import metrics

    gauges = metrics.StoreGauges([("hitl_probe_things", "probe", ["app"])], lambda conn, now: 1 / 0)
    assert [list(f.samples) for f in gauges.collect()] == [[]]

    class Broken:
        def read(self):
            raise OSError("store down")

    before = REGISTRY.get_sample_value("hitl_store_query_errors_total") or 0
    gauges.db = Broken()
    assert [list(f.samples) for f in gauges.collect()] == [[]]
    assert REGISTRY.get_sample_value("hitl_store_query_errors_total") == before + 1


def test_deliveries_are_counted_consumed_settled_and_dead_lettered_by_queue():
    from shared.broker import Delivery, Reject, RetryLater
    from shared.broker.dispatch import handle_delivery
    from shared.topology import Names, build_topology

    class Broker:
        topology = build_topology(Names("mx"))
        max_attempts = 2

        async def run_handler(self, handler, delivery):
            await handler(delivery)

        async def publish(self, *args, **kwargs):
            return None

    class Consumer:
        def __init__(self, handler, declare=None):
            self.handler, self.declare = handler, declare

    async def ok(_):
        return None

    async def reject(_):
        raise Reject("bad")

    async def later(_):
        raise RetryLater("wait", delay_s=1)

    def run(handler, attempt=1, declare=None):
        d = Delivery("mx.decisions", b"{}", "", "", {"x-hitl-attempt": attempt}, "m", None, None, False)
        return asyncio.run(handle_delivery(Broker(), Consumer(handler, declare), d))

    value = lambda name, **labels: REGISTRY.get_sample_value(name, labels) or 0  # noqa: E731
    before = {k: value(*k[:1], **dict(k[1:])) for k in [
        ("hitl_messages_consumed_total", ("queue", "mx.decisions")),
        ("hitl_messages_settled_total", ("queue", "mx.decisions"), ("outcome", "acked")),
        ("hitl_messages_settled_total", ("queue", "mx.decisions"), ("outcome", "rejected")),
        ("hitl_messages_settled_total", ("queue", "mx.decisions"), ("outcome", "retried")),
        ("hitl_messages_settled_total", ("queue", "mx.decisions"), ("outcome", "gave_up")),
        ("hitl_messages_dead_lettered_total", ("queue", "mx.decisions")),
        ("hitl_messages_consumed_total", ("queue", "private")),
    ]}
    run(ok), run(reject), run(later), run(later, attempt=2), run(ok, declare=object())
    after = {k: value(*k[:1], **dict(k[1:])) for k in before}
    assert [after[k] - before[k] for k in before] == [4, 1, 1, 1, 1, 2, 1]
    assert value("hitl_message_handling_seconds_count", queue="mx.decisions") >= 4
