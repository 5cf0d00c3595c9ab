"""Run the real Prometheus / Alertmanager / promtool / amtool binaries from tests.

Reusable by the static checks (tests/alerts/test_rules.py) and by the end-to-end
test that scrapes a live watcher and sender.  Standard library + PyYAML only.

Typical use::

    from tests.alerts import prom            # or: from . import prom (inside tests/alerts)

    cfg = prom.make_config({"envios-watcher": ["127.0.0.1:9108"],
                            "envios-sender": ["127.0.0.1:9107"]},
                           scrape_interval="1s", evaluation_interval="1s")
    with prom.PrometheusServer(cfg, rule_files=[prom.RULES_FILE], workdir=tmp_path) as p:
        p.wait_for_targets(["envios-watcher", "envios-sender"], timeout=30)
        p.wait_for_alert("EnviosStuckSending", state="firing", timeout=120)
        p.query('max by (campania_id) (envios_stuck_sending)')

Binaries: when one is missing, :func:`need_binary` fails the test if ``CI`` is
true and skips it otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import free_port  # noqa: F401 - re-exported for the tests here

REPO_ROOT = Path(__file__).resolve().parents[2]
ALERTS_DIR = REPO_ROOT / "alerts"
RULES_FILE = ALERTS_DIR / "envios.rules.yml"
RULE_TESTS_DIR = ALERTS_DIR / "tests"
ALERTMANAGER_CONFIG = ALERTS_DIR / "alertmanager.yml"
RUNBOOK = ALERTS_DIR / "RUNBOOK.md"
DASHBOARD = REPO_ROOT / "grafana" / "dashboards" / "envios.json"

WATCHER_JOB = "envios-watcher"
SENDER_JOB = "envios-sender"
WEBHOOKS_JOB = "envios-webhooks"

# Debian installs Alertmanager as prometheus-alertmanager.
_BINARY_CANDIDATES = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "amtool": ("amtool",),
    "alertmanager": ("alertmanager", "prometheus-alertmanager"),
}


# --------------------------------------------------------------------------- binaries
def in_ci() -> bool:
    """True when the CI environment variable says so (CI=true/1/yes)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def find_binary(name: str) -> str | None:
    """Absolute path of ``name`` (prometheus, promtool, amtool, alertmanager) or None."""
    for candidate in _BINARY_CANDIDATES.get(name, (name,)):
        path = shutil.which(candidate) or (
            f"/usr/bin/{candidate}" if os.access(f"/usr/bin/{candidate}", os.X_OK) else None
        )
        if path:
            return path
    return None


def need_binary(name: str) -> str:
    """Path of a binary; pytest.fail when missing under CI=true, pytest.skip otherwise."""
    path = find_binary(name)
    if path:
        return path
    import pytest

    msg = f"{name} not installed (Debian: apt-get install prometheus prometheus-alertmanager)"
    if in_ci():
        pytest.fail(msg + " - required when CI=true", pytrace=False)
    pytest.skip(msg)
    raise AssertionError("unreachable")


def run_tool(
    args: Sequence[str], *, timeout: float = 60, cwd: Path | str | None = None
) -> subprocess.CompletedProcess:
    """Run a command, capture text output, never raise on a non-zero exit."""
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO_ROOT,
        check=False,
    )


# --------------------------------------------------------------------------- durations / rules
_DURATION_RE = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    """Prometheus duration ('90s', '1m', '1h30m') in seconds."""
    text = str(text).strip()
    if not text or _DURATION_RE.sub("", text):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT_S[u] for n, u in _DURATION_RE.findall(text))


def format_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration ('1m30s', '500ms')."""
    ms = int(round(seconds * 1000))
    if ms % 1000:
        return f"{ms}ms"
    s, out = ms // 1000, ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out or "0s"


def load_rules(path: Path | str = RULES_FILE) -> dict:
    """The parsed rule file."""
    return yaml.safe_load(Path(path).read_text())


def alerting_rules(path: Path | str = RULES_FILE) -> list[dict]:
    """Every alerting rule (dicts with alert/expr/for/labels/annotations) of a rule file."""
    return [r for g in load_rules(path)["groups"] for r in g["rules"] if "alert" in r]


def copy_rules_with_max_for(
    src: Path | str = RULES_FILE, dst: Path | str | None = None, max_for: str = "30s"
) -> Path:
    """Write a copy of a rule file where every ``for:`` is capped at ``max_for``.

    For an end-to-end test that wants the slower alerts to fire within its time
    budget.  Only ``for:`` changes: thresholds inside expressions (e.g. the 600 s
    of EnviosSenderStalled) stay.  Returns the path written (a temp file if dst is None).
    """
    cap = parse_duration(max_for)
    doc = load_rules(src)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule and parse_duration(rule["for"]) > cap:
                rule["for"] = format_duration(cap)
    if dst is None:
        fd, name = tempfile.mkstemp(prefix="envios-rules-", suffix=".yml")
        os.close(fd)
        dst = name
    Path(dst).write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    return Path(dst)


# --------------------------------------------------------------------------- grafana
_GRAFANA_VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
GRAFANA_DEFAULT_VARS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "datasource": "prometheus",
    "campania_id": ".*",
    "cliente_id": ".*",
}


def grafana_expr(expr: str, variables: Mapping[str, str] | None = None) -> str:
    """Replace Grafana variables ($x, ${x}, ${x:fmt}, [[x]]) so Prometheus can evaluate the expr.

    Defaults: rate/interval variables -> 1m, $__range -> 1h, campaign/session
    variables -> '.*' (the "All" value).  Unknown variables raise KeyError.
    """
    values = {**GRAFANA_DEFAULT_VARS, **(variables or {})}

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values[name]

    return _GRAFANA_VAR_RE.sub(sub, expr)


def iter_panels(dashboard: Mapping[str, Any]) -> Iterable[dict]:
    """Every panel of a dashboard JSON model, including those nested in rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from iter_panels(panel)  # collapsed rows keep children in "panels"


def dashboard_targets(path: Path | str = DASHBOARD) -> list[tuple[str, str, str]]:
    """(panel title, refId, raw expr) for every Prometheus target of the dashboard."""
    dash = json.loads(Path(path).read_text())
    out = []
    for panel in iter_panels(dash):
        for target in panel.get("targets", []):
            if "expr" in target:
                out.append((panel.get("title", ""), target.get("refId", ""), target["expr"]))
    return out


# --------------------------------------------------------------------------- HTTP
class PromAPIError(RuntimeError):
    """An HTTP API call answered with status error (e.g. a PromQL parse error)."""

    def __init__(self, message: str, payload: Any = None):
        super().__init__(message)
        self.payload = payload


def _http(
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait_ready(
    url: str, proc: subprocess.Popen, log_path: Path, timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            status, _ = _http("GET", url, timeout=1)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s:\n{_tail(log_path)}")


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _stop(proc: subprocess.Popen | None, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# --------------------------------------------------------------------------- Prometheus
def make_config(
    scrape_jobs: Mapping[str, Sequence[str]] | None = None,
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    alertmanagers: Sequence[str] = (),
) -> dict:
    """A prometheus.yml as a dict: one static job per entry of ``scrape_jobs``
    (job name -> list of host:port targets), optional Alertmanager targets.
    ``rule_files`` is filled in by PrometheusServer."""
    cfg: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "scrape_timeout": scrape_interval if parse_duration(scrape_interval) < 10 else "10s",
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(targets)}]}
            for job, targets in (scrape_jobs or {}).items()
        ],
    }
    if alertmanagers:
        cfg["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
        }
    return cfg


class _LoopbackBinary:
    """A Prometheus-family binary on 127.0.0.1: launch, wait for /-/ready, stop, clean up."""

    name = ""
    workdir: Path
    port: int
    proc: subprocess.Popen | None
    log_path: Path
    startup_timeout: float
    _own_workdir: bool

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _launch(self, args: Sequence[str]):
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        try:
            _wait_ready(
                self.url + "/-/ready", self.proc, self.log_path, self.startup_timeout, self.name
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10) -> None:
        _stop(self.proc, timeout)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PrometheusServer(_LoopbackBinary):
    """A real ``prometheus`` on 127.0.0.1 with an empty TSDB in a temp dir.

    ``config``: a dict (see make_config), YAML text, or a path to a YAML file.
    ``rule_files``: copied into the workdir and set as the config's rule_files.
    Use as a context manager, or call start()/stop().
    """

    def __init__(
        self,
        config: Mapping[str, Any] | str | Path | None = None,
        rule_files: Iterable[Path | str] = (),
        *,
        workdir: Path | str | None = None,
        port: int | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ):
        if config is None:
            config = make_config()
        if isinstance(config, Path):
            config = config.read_text()
        self._config = yaml.safe_load(config) if isinstance(config, str) else dict(config)
        self._config = self._config or {}
        self._rule_files = [Path(r) for r in rule_files]
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="envios-prom-"))
        self.port = port or free_port()
        self.binary = binary or need_binary("prometheus")
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "prometheus.log"
        self.config_path = self.workdir / "prometheus.yml"

    name = "prometheus"

    # -- lifecycle
    def start(self) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._rule_files:
            rules_dir = self.workdir / "rules"
            rules_dir.mkdir(exist_ok=True)
            copied = []
            for i, src in enumerate(self._rule_files):
                dst = rules_dir / f"{i:02d}-{src.name}"
                shutil.copyfile(src, dst)
                copied.append(str(dst))
            self._config["rule_files"] = copied
        self.config_path.write_text(yaml.safe_dump(self._config, sort_keys=False))
        args = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=info",
            *self.extra_args,
        ]
        return self._launch(args)

    def log(self) -> str:
        """Prometheus' own log so far (for assertion messages)."""
        return _tail(self.log_path, 200)

    def reload(self) -> None:
        """POST /-/reload (after editing config_path or the copied rule files)."""
        status, body = _http("POST", self.url + "/-/reload")
        if status != 200:
            raise PromAPIError(f"reload failed ({status}): {body.decode(errors='replace')}")

    # -- HTTP API
    def api(
        self, path: str, params: Mapping[str, Any] | None = None, *, method: str = "GET"
    ) -> Any:
        """Call /api/v1/<path>; return its ``data``; raise PromAPIError on status error."""
        url = f"{self.url}/api/v1/{path.lstrip('/')}"
        encoded = urllib.parse.urlencode(
            {k: v for k, v in (params or {}).items() if v is not None}, doseq=True
        )
        if method == "GET":
            status, body = _http("GET", url + (f"?{encoded}" if encoded else ""))
        else:
            status, body = _http(
                "POST",
                url,
                data=encoded.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        try:
            payload = json.loads(body)
        except ValueError as e:
            raise PromAPIError(f"{path}: HTTP {status}, not JSON: {body[:200]!r}") from e
        if payload.get("status") != "success":
            raise PromAPIError(
                f"{path}: {payload.get('errorType')}: {payload.get('error')}", payload
            )
        return payload.get("data")

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant query; the result list ([{metric: {...}, value: [ts, "v"]}, ...]).
        Scalars/strings come back as a one-element list [{metric: {}, value: [...]}]."""
        data = self.api("query", {"query": expr, "time": at}, method="POST")
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict]:
        """Range query; the result list ([{metric: {...}, values: [[ts, "v"], ...]}, ...])."""
        return self.api(
            "query_range", {"query": expr, "start": start, "end": end, "step": step}, method="POST"
        )["result"]

    def targets(self) -> list[dict]:
        """Active scrape targets."""
        return self.api("targets", {"state": "active"})["activeTargets"]

    def rules(self) -> list[dict]:
        """Loaded rule groups (with health and lastError of each rule)."""
        return self.api("rules")["groups"]

    def alerts(self) -> list[dict]:
        """Pending and firing alerts ([{labels, annotations, state, activeAt, value}])."""
        return self.api("alerts")["alerts"]

    def find_alerts(
        self, name: str, state: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[dict]:
        """Alerts named ``name``, optionally in ``state`` (pending|firing) and with these labels."""
        return [
            a
            for a in self.alerts()
            if a["labels"].get("alertname") == name
            and (state is None or a["state"] == state)
            and all(a["labels"].get(k) == v for k, v in (labels or {}).items())
        ]

    def wait_for_alert(
        self,
        name: str,
        state: str = "firing",
        *,
        labels: Mapping[str, str] | None = None,
        timeout: float = 120,
        poll: float = 1.0,
    ) -> dict:
        """Wait until alert ``name`` is in ``state`` (pending also matches a later firing when
        state='pending'); return it.  TimeoutError lists the alerts seen."""
        states = {"pending": {"pending", "firing"}, "firing": {"firing"}}.get(state, {state})
        deadline = time.monotonic() + timeout
        seen: list[dict] = []
        while True:
            seen = self.alerts()
            for a in seen:
                if (
                    a["labels"].get("alertname") == name
                    and a["state"] in states
                    and all(a["labels"].get(k) == v for k, v in (labels or {}).items())
                ):
                    return a
            if time.monotonic() >= deadline:
                brief = [(a["labels"].get("alertname"), a["state"], a["labels"]) for a in seen]
                raise TimeoutError(
                    f"alert {name} {labels or ''} not {state} after {timeout}s; alerts: {brief}"
                )
            time.sleep(poll)

    def wait_for_targets(
        self, jobs: Iterable[str], *, timeout: float = 30, poll: float = 0.5
    ) -> None:
        """Wait until every target of every named job reports health 'up'."""
        jobs = set(jobs)
        deadline = time.monotonic() + timeout
        while True:
            targets = [t for t in self.targets() if t["labels"].get("job") in jobs]
            up_jobs = {t["labels"]["job"] for t in targets if t["health"] == "up"}
            if up_jobs == jobs and all(t["health"] == "up" for t in targets):
                return
            if time.monotonic() >= deadline:
                brief = [
                    (t["labels"].get("job"), t["scrapeUrl"], t["health"], t.get("lastError"))
                    for t in targets
                ]
                raise TimeoutError(f"targets not up after {timeout}s: {brief}")
            time.sleep(poll)

    def wait_for_series(self, expr: str, *, timeout: float = 30, poll: float = 0.5) -> list[dict]:
        """Wait until an instant query returns at least one series; return the result."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no series for {expr!r} after {timeout}s")
            time.sleep(poll)


def start_prometheus(
    config: Mapping[str, Any] | str | Path | None = None,
    rule_files: Iterable[Path | str] = (),
    **kwargs: Any,
) -> PrometheusServer:
    """PrometheusServer(config, rule_files, **kwargs).start() - remember to .stop() it."""
    return PrometheusServer(config, rule_files, **kwargs).start()


# --------------------------------------------------------------------------- Alertmanager
class AlertmanagerServer(_LoopbackBinary):
    """A real Alertmanager on 127.0.0.1 (clustering off, temp storage)."""

    def __init__(
        self,
        config: Path | str = ALERTMANAGER_CONFIG,
        *,
        workdir: Path | str | None = None,
        port: int | None = None,
        binary: str | None = None,
        startup_timeout: float = 30.0,
    ):
        self.config_path = Path(config)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="envios-am-"))
        self.port = port or free_port()
        self.binary = binary or need_binary("alertmanager")
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "alertmanager.log"

    name = "alertmanager"

    def start(self) -> AlertmanagerServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]
        return self._launch(args)

    def post_alerts(
        self, label_sets: Iterable[Mapping[str, str]], annotations: Mapping[str, str] | None = None
    ) -> None:
        """POST /api/v2/alerts: one firing alert per label set."""
        body = json.dumps(
            [{"labels": dict(ls), "annotations": dict(annotations or {})} for ls in label_sets]
        )
        status, resp = _http(
            "POST",
            self.url + "/api/v2/alerts",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        if status != 200:
            raise PromAPIError(
                f"alertmanager rejected alerts ({status}): {resp.decode(errors='replace')}"
            )

    def alerts(self) -> list[dict]:
        """GET /api/v2/alerts: [{labels, status: {state: active|suppressed, inhibitedBy, ...},
        ...}]."""
        status, body = _http("GET", self.url + "/api/v2/alerts")
        if status != 200:
            raise PromAPIError(f"alertmanager alerts: HTTP {status}")
        return json.loads(body)


# --------------------------------------------------------------------------- amtool
def amtool_route(labels: Mapping[str, str], config: Path | str = ALERTMANAGER_CONFIG) -> list[str]:
    """Receivers ``amtool config routes test`` resolves for a label set."""
    amtool = need_binary("amtool")
    res = run_tool(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={config}",
            *[f"{k}={v}" for k, v in labels.items()],
        ]
    )
    if res.returncode != 0:
        raise RuntimeError(f"amtool routes test failed: {res.stdout}{res.stderr}")
    return [r.strip() for r in res.stdout.strip().split(",") if r.strip()]
