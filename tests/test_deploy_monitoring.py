"""deploy/prometheus rules and deploy/grafana dashboard: promtool parses and unit-tests them, and they name only
metrics the running app exports (or the few listed as pending)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from devtools.local_tools import find_tool
from devtools.promql_names import Selector, selectors
from runnerguard.store import rollback_state
from runnerguard.web import prometheus
from tests.helpers import dumps, signed_headers

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "runnerguard-rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "runnerguard-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "runnerguard.json"

# Metrics other engineers are adding that the rules and the dashboard use already (none left: the host gauges and
# the watchdog's counter have landed). Each must move out of this list when it lands in /metrics:
# test_pending_metrics_are_not_exported_yet fails, naming it, as soon as the app exports it.
PENDING_METRICS: frozenset[str] = frozenset()
# The rollback state being added beside them (a trigger fired and the PR could not be opened); same rule.
PENDING_ROLLBACK_STATES: frozenset[str] = frozenset()
SEVERITIES = ("critical", "warning", "info")
SECTIONS = ["Pools", "Runner hosts", "Caches", "Deliveries", "Tasks"]
# Grafana's own interval variables, replaced by a typical value so that promtool sees a plain duration.
GRAFANA_INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1d"}
GRAFANA_VARIABLE_RE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)")
LABEL_VALUES_RE = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*$", re.DOTALL)
TYPE_LINE_RE = re.compile(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$", re.MULTILINE)


def promtool_run(promtool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = find_tool("promtool")
    if path is None:
        pytest.skip("promtool not found: `sh devtools/install_promtool.sh` unpacks Debian's prometheus package "
                    "(needs apt-get and the Debian archive), as `make test` does")
    return path


@pytest.fixture()
def scrape(client: FlaskClient) -> str:
    """/metrics of the running app, after one delivery accepted and one refused for its signature, so that the
    outcomes the rules and the dashboard match on are there to be seen."""
    body = dumps({"zen": "Keep it logically awesome.", "hook_id": 123})
    assert client.post("/webhooks/github", data=body, headers=signed_headers(body, "ping")).status_code == 200
    forged = {**signed_headers(body, "ping"), "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert client.post("/webhooks/github", data=body, headers=forged).status_code == 401
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def exported_names(text: str) -> frozenset[str]:
    """The sample names an exposition can carry: each `# TYPE` family, a histogram's as _bucket, _sum, _count."""
    names: set[str] = set()
    for name, kind in TYPE_LINE_RE.findall(text):
        names |= {name + suffix for suffix in prometheus.HISTOGRAM_SUFFIXES} if kind == "histogram" else {name}
    return frozenset(names)


@pytest.fixture()
def exported(scrape: str) -> frozenset[str]:
    return exported_names(scrape)


def shown_label_values(text: str, metric: str, label: str) -> set[str]:
    return set(re.findall(rf'^{re.escape(metric)}\{{[^}}]*\b{label}="([^"]*)"', text, re.MULTILINE))


def unknown_metrics(exprs: dict[str, str], known: frozenset[str]) -> list[str]:
    return [f"{where}: {s.name}" for where, expr in exprs.items() for s in selectors(expr) if s.name not in known]


def wrong_label_values(exprs: dict[str, str], scrape: str) -> list[str]:
    """Equality matchers on a label whose values are known: the rollback states and the delivery outcomes."""
    allowed = {
        ("runnerguard_rollback_state", "state"): set(rollback_state.STATES) | PENDING_ROLLBACK_STATES,
        ("runnerguard_webhook_deliveries_total", "outcome"):
            shown_label_values(scrape, "runnerguard_webhook_deliveries_total", "outcome"),
    }
    wrong = []
    for where, expr in exprs.items():
        for selector in selectors(expr):
            for (metric, label), values in allowed.items():
                value = selector.equals(label)
                if selector.name == metric and value is not None and value not in values:
                    wrong.append(f"{where}: {metric}{{{label}={value!r}}} (known: {sorted(values)})")
    return wrong


# --- the alerting rules ---------------------------------------------------------------------------------------

def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def rule_exprs() -> dict[str, str]:
    return {rule["alert"]: str(rule["expr"]) for rule in alert_rules()}


def test_rules_pass_promtool_check(promtool: str) -> None:
    result = promtool_run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_check_refuses_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"alert": "Broken", "expr": "sum(runnerguard_queue_depth", "for": "5m"}]}]}))
    result = promtool_run(promtool, "check", "rules", str(broken))
    assert result.returncode != 0


def test_rule_unit_tests_pass(promtool: str) -> None:
    result = promtool_run(promtool, "test", "rules", RULE_TESTS.name, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_for_severity_summary_and_runbook() -> None:
    rules = alert_rules()
    assert len(rules) >= 10
    for rule in rules:
        where = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{where}: no `for:`"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{where}: severity"
        annotations = rule.get("annotations", {})
        assert len(annotations.get("summary", "")) > 20, f"{where}: summary"
        assert len(annotations.get("runbook", "")) > 40, f"{where}: runbook"


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    alerts = set(rule_exprs())
    assert alerts - fires == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested staying quiet"


def test_each_unit_test_fails_when_its_rule_never_fires(promtool: str, tmp_path: Path) -> None:
    """The rule tests have teeth: blank any one rule's expression and `promtool test rules` must fail."""
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    source = yaml.safe_load(RULES.read_text())
    for alert in rule_exprs():
        mutated = json.loads(json.dumps(source))
        for group in mutated["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    rule["expr"] = "vector(0) > 1"
        (tmp_path / RULES.name).write_text(yaml.safe_dump(mutated))
        result = promtool_run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
        assert result.returncode != 0, f"no unit test notices {alert} never firing"


def test_rules_name_only_exported_or_pending_metrics(exported: frozenset[str]) -> None:
    assert unknown_metrics(rule_exprs(), exported | PENDING_METRICS) == []


def test_rules_match_only_label_values_runnerguard_writes(scrape: str) -> None:
    assert wrong_label_values(rule_exprs(), scrape) == []


def test_the_name_check_catches_a_metric_nobody_exports(exported: frozenset[str], scrape: str) -> None:
    exprs = {"made-up": "rate(runnerguard_made_up_total[5m]) > 0 and on() runnerguard_queue_depth > 1",
             "typo": 'runnerguard_webhook_deliveries_total{outcome="bad_signatures"}'}
    assert unknown_metrics(exprs, exported | PENDING_METRICS) == ["made-up: runnerguard_made_up_total"]
    assert len(wrong_label_values(exprs, scrape)) == 1


def test_pending_metrics_are_not_exported_yet(exported: frozenset[str]) -> None:
    landed = sorted(PENDING_METRICS & exported) + sorted(PENDING_ROLLBACK_STATES & set(rollback_state.STATES))
    assert landed == [], f"now exported: move {landed} out of PENDING_* in {Path(__file__).name}"


def test_the_scrape_shows_every_family_the_exporter_declares(exported: frozenset[str]) -> None:
    declared = {name for name, (kind, _) in prometheus.FAMILIES.items() if kind != "histogram"}
    declared |= {name + "_bucket" for name, (kind, _) in prometheus.FAMILIES.items() if kind == "histogram"}
    assert declared - exported == set()


# --- the Grafana dashboard ------------------------------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # a collapsed row holds its panels


def raw_queries(board: dict[str, Any]) -> dict[str, str]:
    """Every PromQL expression: panel targets, and the series selector of each `label_values(...)` variable."""
    queries: dict[str, str] = {}
    for panel in all_panels(board["panels"]):
        for target in panel.get("targets", []):
            queries[f"panel {panel['id']} {panel['title']!r} {target['refId']}"] = target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = LABEL_VALUES_RE.match(query)
            assert match, f"variable {variable['name']}: only label_values(selector, label) is checked"
            queries[f"variable {variable['name']}"] = match.group(1)
    return queries


def substitute(expr: str, variables: set[str]) -> str:
    """Grafana's variables as a Prometheus would receive them; an undefined one is an error."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in GRAFANA_INTERVALS:
            return GRAFANA_INTERVALS[name]
        if name in variables:
            return ".*"  # a multi-value variable arrives as a regex; the dashboard only uses them in =~
        raise AssertionError(f"undefined Grafana variable ${name} in {expr!r}")
    return GRAFANA_VARIABLE_RE.sub(value, expr)


def dashboard_exprs() -> dict[str, str]:
    board = dashboard()
    variables = {v["name"] for v in board["templating"]["list"]}
    return {where: substitute(expr, variables) for where, expr in raw_queries(board).items()}


def as_recording_rules(exprs: dict[str, str]) -> str:
    rules = [{"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(exprs.values())]
    return yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})


def test_dashboard_is_an_importable_dashboard() -> None:
    board = dashboard()
    assert board["uid"] == "runnerguard" and board["title"] == "runnerguard"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = list(all_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    assert [p["title"] for p in panels if p["type"] == "row"] == SECTIONS
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            # one data source, chosen at import: no uid of the exporting Grafana baked in
            for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
                assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_every_dashboard_query_parses(promtool: str, tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    generated = tmp_path / "dashboard-queries.yml"
    generated.write_text(as_recording_rules(exprs))
    result = promtool_run(promtool, "check", "rules", str(generated))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_a_dashboard_query_that_does_not_parse_is_refused(promtool: str, tmp_path: Path) -> None:
    generated = tmp_path / "dashboard-queries.yml"
    generated.write_text(as_recording_rules({"bad": 'sum by (pool) (rate(runnerguard_jobs_total[5m])'}))
    assert promtool_run(promtool, "check", "rules", str(generated)).returncode != 0


def test_dashboard_names_only_exported_or_pending_metrics(exported: frozenset[str]) -> None:
    assert unknown_metrics(dashboard_exprs(), exported | PENDING_METRICS) == []


def test_dashboard_matches_only_label_values_runnerguard_writes(scrape: str) -> None:
    assert wrong_label_values(dashboard_exprs(), scrape) == []


def test_dashboard_shows_each_section_from_its_metrics() -> None:
    """Pools, hosts, caches, deliveries, tasks: each row's panels read that section's metrics."""
    board = dashboard()
    wanted = {"Pools": "runnerguard_pool_failure_rate", "Runner hosts": "runnerguard_host_up",
              "Caches": "runnerguard_cache_hit_rate", "Deliveries": "runnerguard_webhook_deliveries_total",
              "Tasks": "runnerguard_failed_tasks"}
    section = ""
    names: dict[str, set[str]] = {}
    for panel in board["panels"]:
        if panel["type"] == "row":
            section = panel["title"]
            continue
        for target in panel["targets"]:
            names.setdefault(section, set()).update(s.name for s in selectors(substitute(target["expr"], {"pool", "host"})))
    for section, metric in wanted.items():
        assert metric in names.get(section, set()), section


def test_undefined_grafana_variable_is_an_error() -> None:
    with pytest.raises(AssertionError, match=r"\$nope"):
        substitute('runnerguard_queue_depth{queue=~"$nope"}', {"pool"})


def test_selector_lexer_skips_functions_keywords_and_labels() -> None:
    expr = ('sum by (pool) (increase(a_total{x="y}", z=~"1(\\\\.0)?"}[1h] offset 5m)) / on(pool) group_left(repo) '
            'b > bool 1e3 unless absent(c) or topk(3, sum without (le) (d)) and {__name__="e"}')
    assert [s.name for s in selectors(expr)] == ["a_total", "b", "c", "d", "e"]
    assert selectors(expr)[0] == Selector("a_total", (("x", "=", "y}"), ("z", "=~", "1(\\.0)?")))
    with pytest.raises(ValueError, match="without a metric name"):
        selectors('{__name__=~"runnerguard_.*"}')
