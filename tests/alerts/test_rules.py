"""Static checks of alerts/ and grafana/ with the real promtool, amtool, prometheus and
alertmanager.

Binaries missing: the tests that need them fail when CI=true and skip otherwise.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from . import prom

RUNBOOK_BASE = "https://github.com/envios/envios/blob/main/alerts/RUNBOOK.md"
METRICS_DOC = prom.REPO_ROOT / "docs" / "METRICS.md"
PROVISIONING = prom.REPO_ROOT / "grafana" / "provisioning"

ALERTS = prom.alerting_rules()
ALERT_NAMES = [a["alert"] for a in ALERTS]
# Driven by the end-to-end test: must fire within ~2 min of the condition.
E2E_ALERTS = {"EnviosStuckSending", "EnviosSessionNotReadyWithWork"}
SEVERITY_RECEIVER = {"critical": "envios-critical", "warning": "envios-warning"}


def _run_ok(args: list[str]) -> str:
    res = prom.run_tool([str(a) for a in args])
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(map(str, args))} failed ({res.returncode}):\n{out}"
    return out


# --------------------------------------------------------------------------- promtool
def test_promtool_check_rules():
    out = _run_ok([prom.need_binary("promtool"), "check", "rules", prom.RULES_FILE])
    assert "SUCCESS" in out


def test_promtool_unit_tests():
    files = sorted(prom.RULE_TESTS_DIR.glob("*.yml"))
    assert files, "no promtool test files in alerts/tests/"
    out = _run_ok([prom.need_binary("promtool"), "test", "rules", *files])
    assert "FAILED" not in out, out


def test_prometheus_example_config():
    _run_ok(
        [
            prom.need_binary("promtool"),
            "check",
            "config",
            prom.ALERTS_DIR / "prometheus.example.yml",
        ]
    )
    cfg = yaml.safe_load((prom.ALERTS_DIR / "prometheus.example.yml").read_text())
    jobs = {j["job_name"] for j in cfg["scrape_configs"]}
    assert {prom.WATCHER_JOB, prom.SENDER_JOB} <= jobs


def test_unit_test_files_load_the_shipped_rules():
    for path in prom.RULE_TESTS_DIR.glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        targets = {(path.parent / f).resolve() for f in doc["rule_files"]}
        assert targets == {prom.RULES_FILE.resolve()}, path


def _unit_test_cases() -> list[dict]:
    cases = []
    for path in sorted(prom.RULE_TESTS_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(group.get("alert_rule_test", []))
    return cases


def test_every_alert_has_a_firing_and_a_silent_unit_test():
    cases = _unit_test_cases()
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert not set(ALERT_NAMES) - fires, (
        f"alerts never expected to fire: {set(ALERT_NAMES) - fires}"
    )
    assert not set(ALERT_NAMES) - silent, (
        f"alerts never expected silent: {set(ALERT_NAMES) - silent}"
    )
    assert not (fires | silent) - set(ALERT_NAMES), "tests name alerts that do not exist"


def test_firing_unit_tests_check_labels_and_all_annotations():
    for case in _unit_test_cases():
        rule = next(r for r in ALERTS if r["alert"] == case["alertname"])
        for exp in case.get("exp_alerts") or []:
            assert exp["exp_labels"]["severity"] == rule["labels"]["severity"], case
            assert set(exp["exp_annotations"]) == set(rule["annotations"]), case


# --------------------------------------------------------------------------- alert metadata
def test_alert_names_unique():
    assert len(ALERT_NAMES) == len(set(ALERT_NAMES))


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_alert_metadata(rule):
    name = rule["alert"]
    assert re.fullmatch(r"Envios(?:[A-Z][a-z0-9]*)+", name), (
        f"{name}: not CamelCase with prefix Envios"
    )
    assert rule["labels"]["severity"] in SEVERITY_RECEIVER
    ann = rule["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert ann.get(key, "").strip(), f"{name}: missing annotation {key}"
    assert ann["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}"
    # with the values: $value, or for 0/1 conditions (up, paused) the labels that identify it
    assert re.search(r"\$(value|labels)", ann["description"]), f"{name}: description without values"
    assert re.search(r"\$(value|labels)", ann["summary"]), f"{name}: summary without values"
    assert prom.parse_duration(rule.get("for", "0s")) >= 60, f"{name}: for shorter than 1m"


def test_e2e_alerts_fire_within_a_minute():
    for name in E2E_ALERTS:
        rule = next(r for r in ALERTS if r["alert"] == name)
        assert prom.parse_duration(rule["for"]) <= 60, name


def _github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _runbook_sections() -> dict[str, str]:
    text = prom.RUNBOOK.read_text()
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            current = _github_anchor(m.group(1))
            sections[current] = ""
        elif current:
            sections[current] += line + "\n"
    return sections


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_runbook_section(rule):
    sections = _runbook_sections()
    anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
    assert anchor in sections, f"RUNBOOK.md has no heading for #{anchor}"
    body = sections[anchor]
    for part in ("**Meaning.**", "**Confirm", "**Act"):
        assert part in body, f"#{anchor}: missing {part}"
    assert "```" in body or "envios " in body, f"#{anchor}: no command or query to confirm"
    sev = rule["labels"]["severity"]
    assert f"**Severity** {sev}" in body and f"**for** {rule['for']}" in body, (
        f"#{anchor}: severity/for out of date"
    )


def _contract_metrics() -> set[str]:
    return set(re.findall(r"^\|\s*`(envios_\w+)`", METRICS_DOC.read_text(), flags=re.M)) | {
        # the watcher row "`a` / `b`" in DESIGN style
        m
        for m in re.findall(r"`(envios_\w+)`", METRICS_DOC.read_text())
    }


def _metric_names(text: str) -> set[str]:
    text = re.sub(r"\b\w+:\w+:\w+\b", " ", text)  # recording rule names
    names = set(re.findall(r"\benvios_[a-z0-9_]+", text))
    return {
        re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count")) else n
        for n in names
    }


def test_metric_names_follow_the_contract():
    if not METRICS_DOC.exists():
        pytest.skip("docs/METRICS.md missing")
    known = _contract_metrics()
    used = _metric_names(prom.RULES_FILE.read_text()) | _metric_names(prom.DASHBOARD.read_text())
    unknown = {
        n
        for n in used
        if n not in known and not n.startswith("envios_sender_gateway_latency_seconds")
    }
    assert not unknown, f"metric names not in docs/METRICS.md: {sorted(unknown)}"


def test_copy_rules_with_max_for(tmp_path):
    out = prom.copy_rules_with_max_for(prom.RULES_FILE, tmp_path / "short.yml", "30s")
    short = prom.alerting_rules(out)
    assert [r["alert"] for r in short] == ALERT_NAMES
    assert all(prom.parse_duration(r["for"]) <= 30 for r in short)
    assert [r["expr"] for r in short] == [r["expr"] for r in ALERTS]
    _run_ok([prom.need_binary("promtool"), "check", "rules", out])


# --------------------------------------------------------------------------- alertmanager
def test_amtool_check_config():
    out = _run_ok([prom.need_binary("amtool"), "check-config", prom.ALERTMANAGER_CONFIG])
    assert "SUCCESS" in out


ROUTES = [
    (
        {
            "alertname": "EnviosStuckSending",
            "severity": "critical",
            "service": "envios",
            "campania_id": "7",
        },
        "envios-critical",
    ),
    (
        {
            "alertname": "EnviosCampaignErrorRatioHigh",
            "severity": "warning",
            "service": "envios",
            "campania_id": "7",
        },
        "envios-warning",
    ),
    (
        {
            "alertname": "EnviosCampaignAutoPaused",
            "severity": "warning",
            "campania_id": "7",
            "programacion_id": "3",
            "reason": "stuck",
        },
        "envios-warning",
    ),
    (
        {"alertname": "EnviosWatcherDown", "severity": "critical", "job": "envios-watcher"},
        "envios-critical",
    ),
    (
        {"alertname": "EnviosSessionNotReadyWithWork", "severity": "critical", "cliente_id": "51"},
        "envios-critical",
    ),
    ({"alertname": "SomethingElse"}, "envios-default"),
    ({"alertname": "SomethingElse", "severity": "info"}, "envios-default"),
]


@pytest.mark.parametrize(
    "labels,receiver", ROUTES, ids=[f"{lab['alertname']}-{rcv}" for lab, rcv in ROUTES]
)
def test_route(labels, receiver):
    amtool = prom.need_binary("amtool")
    out = _run_ok(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={prom.ALERTMANAGER_CONFIG}",
            f"--verify.receivers={receiver}",
            *[f"{k}={v}" for k, v in labels.items()],
        ]
    )
    assert out.strip().splitlines()[0] == receiver


def test_every_alert_routes_by_its_severity():
    for rule in ALERTS:
        labels = {"alertname": rule["alert"], **rule["labels"], "campania_id": "7"}
        assert prom.amtool_route(labels) == [SEVERITY_RECEIVER[rule["labels"]["severity"]]], rule[
            "alert"
        ]


def test_alertmanager_grouping_and_webhooks():
    cfg = yaml.safe_load(prom.ALERTMANAGER_CONFIG.read_text())
    assert cfg["route"]["group_by"] == ["alertname", "campania_id"]
    for receiver in cfg["receivers"]:
        for hook in receiver["webhook_configs"]:
            assert hook["url"].startswith("http://127.0.0.1:"), hook


def test_inhibition_in_a_real_alertmanager(tmp_path):
    def alert(name, severity, **labels):
        return {"alertname": name, "severity": severity, "service": "envios", **labels}

    sent = {
        "crit-7": alert("EnviosCampaignErrorRatioCritical", "critical", campania_id="7"),
        "warn-7": alert("EnviosCampaignErrorRatioHigh", "warning", campania_id="7"),
        "paused-7": alert(
            "EnviosCampaignAutoPaused",
            "warning",
            campania_id="7",
            programacion_id="3",
            reason="error_ratio",
        ),
        "warn-8": alert("EnviosCampaignErrorRatioHigh", "warning", campania_id="8"),
        # a critical without campania_id must not silence campaign-less warnings
        "watcher-down": alert("EnviosWatcherDown", "critical", job="envios-watcher"),
        "other-warn": alert("SomeOtherWarning", "warning"),
        "db-down-a": alert("EnviosWatcherDatabaseDown", "critical", instance="a:9108"),
        "stale-a": alert("EnviosWatcherStale", "critical", instance="a:9108"),
        "stale-b": alert("EnviosWatcherStale", "critical", instance="b:9108"),
        "session-1": alert("EnviosSessionNotReadyWithWork", "critical", cliente_id="1"),
        "stalled-1": alert("EnviosSenderStalled", "critical", cliente_id="1"),
        "stalled-2": alert("EnviosSenderStalled", "critical", cliente_id="2"),
    }
    suppressed = {"warn-7", "paused-7", "stale-a", "stalled-1"}
    with prom.AlertmanagerServer(prom.ALERTMANAGER_CONFIG, workdir=tmp_path) as am:
        am.post_alerts(sent.values())
        key = {tuple(sorted(v.items())): k for k, v in sent.items()}
        deadline = time.monotonic() + 10
        while True:
            got = {
                key[tuple(sorted(a["labels"].items()))]: a["status"]["state"] for a in am.alerts()
            }
            want = {k: ("suppressed" if k in suppressed else "active") for k in sent}
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert got == want


# --------------------------------------------------------------------------- grafana
@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(prom.DASHBOARD.read_text())


def _data_panels(dash: dict) -> list[dict]:
    return [p for p in prom.iter_panels(dash) if p.get("type") != "row"]


def test_dashboard_model(dashboard):
    assert dashboard["uid"] == "envios-overview"
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    assert dashboard.get("id") is None, "provisioned dashboards must not carry a database id"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    camp = variables["campania_id"]
    assert camp["type"] == "query" and camp["multi"] and camp["includeAll"]
    assert camp["definition"] == "label_values(envios_messages, campania_id)"
    assert camp["query"]["query"] == camp["definition"]
    assert camp["datasource"]["uid"] == "${datasource}"
    ids = [p["id"] for p in prom.iter_panels(dashboard)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"


def test_every_panel_has_a_prometheus_query(dashboard):
    panels = _data_panels(dashboard)
    assert len(panels) >= 10
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("targets"), f"panel {panel['title']!r} has no targets"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r} target without expr"
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        assert "x" in panel["gridPos"] and "w" in panel["gridPos"], panel["title"]


def test_dashboard_covers_the_issue(dashboard):
    exprs = " ".join(e for _, _, e in prom.dashboard_targets())
    for metric in (
        "envios_sender_sends_total",
        "envios_error_ratio",
        "envios_stuck_sending",
        "envios_sent_missing_message_id",
        "envios_sent_unverifiable",
        "envios_messages",
        "envios_sender_session_state",
        "envios_sender_quota_remaining",
        "envios_autopause_total",
        "envios_schedule_paused",
        "envios_watcher_last_refresh_timestamp_seconds",
        "envios_watcher_up",
    ):
        assert metric in exprs, f"no panel shows {metric}"
    assert "rate(envios_sender_sends_total" in exprs
    assert "increase(envios_autopause_total" in exprs
    assert "time() - max by (instance) (envios_watcher_last_refresh_timestamp_seconds)" in exprs


def test_error_ratio_panel_draws_the_alert_line(dashboard):
    panel = next(
        p
        for p in _data_panels(dashboard)
        if p["type"] == "timeseries"
        and any("envios_error_ratio" in t["expr"] for t in p["targets"])
    )
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"
    assert 0.05 in [s["value"] for s in defaults["thresholds"]["steps"]]
    assert defaults["unit"] == "percentunit"


def test_grafana_expr_substitution():
    assert (
        prom.grafana_expr('x{campania_id=~"$campania_id"}[$__rate_interval]')
        == 'x{campania_id=~".*"}[1m]'
    )
    assert prom.grafana_expr("rate(x[${__interval}])") == "rate(x[1m])"
    assert (
        prom.grafana_expr('x{c=~"${campania_id:regex}"}', {"campania_id": "7|8"}) == 'x{c=~"7|8"}'
    )


def test_grafana_provisioning():
    ds = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    dp = yaml.safe_load((PROVISIONING / "dashboards" / "envios.yml").read_text())
    assert dp["apiVersion"] == 1
    (provider,) = dp["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert Path(path).is_absolute()
    assert path in (prom.REPO_ROOT / "grafana" / "README.md").read_text(), (
        "document the dashboards path"
    )


# --------------------------------------------------------------------------- real prometheus
@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    server = prom.PrometheusServer(
        prom.make_config(evaluation_interval="1s"),
        rule_files=[prom.RULES_FILE],
        workdir=tmp_path_factory.mktemp("prometheus"),
    )
    with server:
        yield server


def test_rules_load_and_evaluate_in_prometheus(prometheus):
    deadline = time.monotonic() + 10
    while True:
        groups = prometheus.rules()
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r["health"] == "ok" for r in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {g["name"] for g in groups} == {"envios-watcher", "envios-sender"}
    bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, f"{bad}\n{prometheus.log()}"
    assert {r["name"] for r in rules if r["type"] == "alerting"} == set(ALERT_NAMES)


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(prom.DASHBOARD.read_text())
    out = [(f"{title} [{ref}]", expr) for title, ref, expr in prom.dashboard_targets()]
    out += [
        (f"annotation {a['name']}", a["expr"]) for a in dash["annotations"]["list"] if a.get("expr")
    ]
    return out


@pytest.mark.parametrize("title,expr", _dashboard_exprs(), ids=[t for t, _ in _dashboard_exprs()])
def test_dashboard_expr_evaluates(prometheus, title, expr):
    try:
        prometheus.query(prom.grafana_expr(expr))
    except prom.PromAPIError as e:
        pytest.fail(f"{title}: {expr!r} does not evaluate: {e}")
