"""Static checks of deploy/: the compose stack, the image, the Prometheus config, the systemd units.

The compose stack cannot run here (no Docker engine), so these tests check what can
go wrong without one: a file the stack mounts or copies that is not in the repo, a
Prometheus config promtool rejects, scrape job names the alert rules do not match,
targets that are not services of the stack, units systemd would refuse, a stop
timeout shorter than a send, secrets in the example environment file.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from envios import config as envios_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS_FILE = DEPLOY / "prometheus" / "prometheus.yml"
RULES_FILE = ROOT / "alerts" / "envios.rules.yml"
SYSTEMD = DEPLOY / "systemd"
UNITS = {
    "send": SYSTEMD / "envios-sender.service",
    "watch": SYSTEMD / "envios-watcher.service",
    "webhooks": SYSTEMD / "envios-webhooks.service",
}
ENV_EXAMPLE = SYSTEMD / "envios.env.example"
IN_CI = os.environ.get("CI", "").lower() == "true"

EXPECTED_SERVICES = {
    "mariadb",
    "db-upgrade",
    "sender",
    "watcher",
    "simulator",
    "webhooks",
    "prometheus",
    "alertmanager",
    "grafana",
}


def need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed: .ci/run must install it")
        pytest.skip(f"{name} not installed")
    return path


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "no services: mapping"
    return data


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def prom_config() -> dict:
    return yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def defaults() -> dict:
    """The configuration as the project ships it (config.yaml over the built-in defaults)."""
    return envios_config.load(str(ROOT / "config.yaml"), environ={}).raw


def bind_mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(host source, container target, read-only) of every bind mount of a service."""
    out = []
    for vol in service.get("volumes", []) or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            if len(parts) < 2 or not parts[0].startswith((".", "/", "~")):
                continue  # named volume
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        elif isinstance(vol, dict) and vol.get("type") == "bind":
            out.append((vol["source"], vol["target"], bool(vol.get("read_only"))))
    return out


def named_volumes(service: dict) -> list[str]:
    names = []
    for vol in service.get("volumes", []) or []:
        if isinstance(vol, str):
            source = vol.split(":")[0]
            if ":" in vol and not source.startswith((".", "/", "~")):
                names.append(source)
        elif isinstance(vol, dict) and vol.get("type") == "volume":
            names.append(vol["source"])
    return names


def host_path(source: str) -> Path:
    return (DEPLOY / source).resolve()


def mount_table(services: dict) -> dict[tuple[str, str], Path]:
    """(service, container path) -> resolved host path."""
    return {
        (name, target): host_path(src)
        for name, svc in services.items()
        for src, target, _ in bind_mounts(svc)
    }


def container_file_source(services: dict, service: str, container_path: str) -> Path | None:
    """The host file that appears at container_path in service.

    Either a file mount or a file inside a dir mount.
    """
    path = PurePosixPath(os.path.normpath(container_path))
    best = None
    for src, target, _ in bind_mounts(services[service]):
        t = PurePosixPath(os.path.normpath(target))
        if path == t or t in path.parents:
            if best is None or len(str(t)) > len(str(best[1])):
                best = (host_path(src), t)
    if best is None:
        return None
    src, t = best
    return (src / path.relative_to(t)).resolve() if path != t else src


def command_list(service: dict) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {}) or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def compose_default(value: str) -> str:
    """Resolve ${VAR:-default} / ${VAR-default} to the default, as with VAR unset."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|us|h|hr|min|m|s|sec)?")
_UNIT_S = {
    "ms": 0.001,
    "us": 1e-6,
    "h": 3600,
    "hr": 3600,
    "min": 60,
    "m": 60,
    "s": 1,
    "sec": 1,
    None: 1,
}


def duration_s(text: str) -> float:
    """'90s', '1m30s', '1min 30s', '90' -> seconds (systemd and compose syntaxes)."""
    text = str(text).strip()
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if text[pos : match.start()].strip():
            raise ValueError(f"bad duration {text!r}")
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"bad duration {text!r}")
    return total


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values...]}}; keys may repeat, as systemd allows."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}:{lineno}: key outside a section"
        assert "=" in line, f"{path.name}:{lineno}: not KEY=VALUE: {raw!r}"
        assert not line.endswith("\\"), f"{path.name}:{lineno}: continuation lines not expected"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def last(unit: dict, section: str, key: str) -> str | None:
    values = unit.get(section, {}).get(key)
    return values[-1] if values else None


def valid_env_names() -> set[str]:
    names = set()

    def walk(tree: dict, prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                names.add(envios_config.env_var_name(f"{prefix}{key}"))

    walk(envios_config.DEFAULTS, "")
    return names


# --------------------------------------------------------------------------- compose


def test_compose_parses_and_has_the_stack(services):
    missing = EXPECTED_SERVICES - set(services)
    assert not missing, f"docker-compose.yml lacks services: {sorted(missing)}"
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, f"service {name} has neither image nor build"


def test_every_mounted_host_path_exists_in_the_repo(services):
    mounts = [
        (name, src, target) for name, svc in services.items() for src, target, _ in bind_mounts(svc)
    ]
    assert mounts, "no bind mounts found: the stack must mount the project's config files"
    problems = []
    for name, src, target in mounts:
        path = host_path(src)
        if not str(path).startswith(str(ROOT) + os.sep):
            problems.append(f"{name}: {src} is outside the repository")
        elif not path.exists():
            problems.append(f"{name}: {src} -> {target}: {path.relative_to(ROOT)} does not exist")
    assert not problems, "\n".join(problems)


def test_project_files_are_mounted_where_the_services_read_them(services):
    mounts = mount_table(services)
    sources = {(svc, src) for (svc, _), src in mounts.items()}
    for svc, rel in [
        ("prometheus", "deploy/prometheus/prometheus.yml"),
        ("prometheus", "alerts/envios.rules.yml"),
        ("alertmanager", "alerts/alertmanager.yml"),
        ("grafana", "grafana/provisioning/dashboards"),
        ("grafana", "grafana/dashboards"),
    ]:
        assert (svc, (ROOT / rel).resolve()) in sources, f"{svc} does not mount {rel}"
    # The files the daemons are told to read are those mounts.
    am_cfg = flag_value(command_list(services["alertmanager"]), "--config.file")
    assert (
        am_cfg
        and container_file_source(services, "alertmanager", am_cfg)
        == (ROOT / "alerts/alertmanager.yml").resolve()
    )
    prom_cfg = flag_value(command_list(services["prometheus"]), "--config.file")
    assert (
        prom_cfg
        and container_file_source(services, "prometheus", prom_cfg) == PROMETHEUS_FILE.resolve()
    )
    for src, target, read_only in bind_mounts(services["prometheus"]) + bind_mounts(
        services["alertmanager"]
    ):
        assert read_only, f"{src} -> {target} should be mounted read-only"


def test_named_volumes_are_declared(compose, services):
    declared = set((compose.get("volumes") or {}).keys())
    used = {v for svc in services.values() for v in named_volumes(svc)}
    mariadb_targets = {
        v.split(":")[1]: v.split(":")[0]
        for v in services["mariadb"].get("volumes", [])
        if isinstance(v, str)
    }
    assert mariadb_targets.get("/var/lib/mysql") in declared, (
        "MariaDB's /var/lib/mysql is not on a named volume"
    )
    assert used <= declared, f"volumes used but not declared: {sorted(used - declared)}"


def test_grafana_provisioning_matches_the_mounts(services):
    """The dashboard provider's path is where the dashboards are mounted.

    The datasource reaches Prometheus.
    """
    provider_files = sorted((ROOT / "grafana/provisioning/dashboards").glob("*.y*ml"))
    assert provider_files, "grafana/provisioning/dashboards has no provider file"
    dashboards_dir = (ROOT / "grafana/dashboards").resolve()
    assert list(dashboards_dir.glob("*.json")), "grafana/dashboards has no dashboard JSON"
    for f in provider_files:
        for provider in yaml.safe_load(f.read_text(encoding="utf-8")).get("providers", []):
            path = provider["options"]["path"]
            assert container_file_source(services, "grafana", path) == dashboards_dir, (
                f"{f.name}: provider path {path} is not where grafana/dashboards is mounted"
            )
    # Datasources: whichever directory is mounted at the provisioning path.
    ds_dir = container_file_source(services, "grafana", "/etc/grafana/provisioning/datasources")
    assert ds_dir is not None and ds_dir.is_dir(), "no datasources directory mounted for Grafana"
    project_ds = {
        d["uid"]: d
        for f in (ROOT / "grafana/provisioning/datasources").glob("*.y*ml")
        for d in yaml.safe_load(f.read_text(encoding="utf-8")).get("datasources", [])
    }
    mounted_ds = [
        d
        for f in ds_dir.glob("*.y*ml")
        for d in yaml.safe_load(f.read_text(encoding="utf-8")).get("datasources", [])
    ]
    prom_ds = [d for d in mounted_ds if d.get("type") == "prometheus"]
    assert prom_ds, "no Prometheus datasource provisioned in the stack"
    for d in prom_ds:
        url = urlsplit(d["url"])
        assert url.hostname == "prometheus" and url.port == 9090, (
            f"datasource {d['name']} points at {d['url']}"
        )
        if project_ds:
            assert d["uid"] in project_ds, (
                f"datasource uid {d['uid']} differs from the project's {sorted(project_ds)}"
            )


def test_startup_order_and_one_shot_upgrade(services):
    mariadb_hc = services["mariadb"].get("healthcheck", {})
    assert mariadb_hc.get("test"), "mariadb has no healthcheck"
    up = services["db-upgrade"]
    assert command_list(up) == ["db", "upgrade"]
    assert str(up.get("restart", "no")) == "no", "db-upgrade is one-shot: restart must be 'no'"
    assert up["depends_on"]["mariadb"]["condition"] == "service_healthy"
    for name in ("sender", "watcher"):
        deps = services[name]["depends_on"]
        assert deps["db-upgrade"]["condition"] == "service_completed_successfully", name
    # The watcher must run while the sender is down: no dependency on it.
    assert "sender" not in (services["watcher"].get("depends_on") or {})


def test_envios_services_run_the_console_script(services):
    expected = {"sender": ["send"], "watcher": ["watch"], "db-upgrade": ["db", "upgrade"]}
    for name, args in expected.items():
        assert command_list(services[name])[: len(args)] == args, name
    sim = command_list(services["simulator"])
    assert sim[0] == "gateway-sim"
    assert flag_value(sim, "--host") == "0.0.0.0", (
        "the simulator must listen beyond its container's loopback"
    )


def test_sender_defaults_to_the_simulator(services):
    env = env_of(services["sender"])
    url = urlsplit(compose_default(env["ENVIOS_GATEWAY_BASE_URL"]))
    assert url.hostname == "simulator"
    assert url.port == int(flag_value(command_list(services["simulator"]), "--port"))
    assert "mariadb:3306" in env["ENVIOS_DATABASE_URL"]


def test_compose_env_vars_are_real_config_keys(services):
    names = valid_env_names()
    for name, svc in services.items():
        if "build" in svc:  # the envios image
            unknown = {k for k in env_of(svc) if k.startswith("ENVIOS_")} - names
            assert not unknown, f"{name}: {sorted(unknown)} are not config keys (typo?)"


def test_sender_keeps_its_journal_on_a_volume_the_image_lets_it_write(compose, services):
    env = env_of(services["sender"])
    journal = env.get("ENVIOS_SENDER_JOURNAL_DIR", "")
    assert journal.startswith("/"), "the sender runs without a journal (docs/RELIABILITY.md)"
    mounts = {
        target: source
        for source, target in (
            v.split(":")[:2] for v in services["sender"].get("volumes", []) if isinstance(v, str)
        )
    }
    assert mounts.get(journal) in (compose.get("volumes") or {}), (
        "the journal must be on a declared named volume"
    )
    assert mounts[journal] not in {
        n for name, svc in services.items() if name != "sender" for n in named_volumes(svc)
    }
    assert (
        env_of(services["sender"])["ENVIOS_DATABASE_URL"]
        == env_of(services["watcher"])["ENVIOS_DATABASE_URL"]
    )
    # A new named volume takes the owner of the image's directory: it must exist there, owned by
    # envios.
    run_lines = " ".join(arg for op, arg in dockerfile_instructions() if op == "RUN")
    assert re.search(rf"install -d -o envios -g envios\b[^&]*\s{re.escape(journal)}\b", run_lines)


def test_sender_stop_grace_exceeds_send_timeout(services, defaults):
    sender = services["sender"]
    assert sender.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert duration_s(sender["stop_grace_period"]) > defaults["gateway"]["send_timeout_s"]


def compose_cli() -> list[str]:
    """`docker compose` (v2) or `docker-compose`.

    The latter is the Debian package docker-compose, what .ci/run installs.

    Neither needs a Docker engine for `config`: it validates the file against the
    Compose schema and resolves variables, relative paths and anchors.
    """
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=60
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    return [need_binary("docker-compose")]


def compose_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*compose_cli(), "-f", str(path), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=path.parent,
        timeout=120,
    )


def test_compose_file_validates_with_the_compose_cli(tmp_path):
    """Full schema check of deploy/docker-compose.yml.

    The CLI is proved to reject a bad file first.
    """
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        "services:\n  sender:\n    image: envios:local\n    restart_policy_typo: always\n"
    )
    assert compose_config(broken).returncode != 0, (
        "the compose CLI accepted an unknown key: it validates nothing"
    )
    proc = compose_config(COMPOSE_FILE)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_every_envios_service_builds_from_the_repo_with_deploy_dockerfile(services):
    built = [name for name, svc in services.items() if "build" in svc]
    assert {"sender", "watcher", "db-upgrade", "simulator"} <= set(built)
    for name in built:
        build = services[name]["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT, (
            f"{name}: build context is not the repo root"
        )
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE.resolve(), name


def test_dockerfile_copy_sources_exist():
    copies = [rest for word, rest in dockerfile_instructions() if word in ("COPY", "ADD")]
    assert copies, "Dockerfile copies nothing"
    for rest in copies:
        args = [a for a in shlex.split(rest) if not a.startswith("--")]
        for src in args[:-1]:
            assert (ROOT / src).exists(), f"COPY source {src} is not in the repo"


def test_dockerfile_copies_every_package_and_installs_it():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[tool.setuptools.package-dir]", 1)[1].split("\n[", 1)[0]
    # the folders `pip install .` reads: the right-hand sides of package-dir
    packages = sorted(set(re.findall(r'^"[\w.]+"\s*=\s*"(\w+)"', section, re.MULTILINE)))
    assert packages == ["envios", "monitor", "sender", "simulator"]
    copied = set()
    for word, rest in dockerfile_instructions():
        if word == "COPY":
            copied.update(a.rstrip("/") for a in shlex.split(rest)[:-1] if not a.startswith("--"))
    for needed in [*packages, "pyproject.toml", "README.md"]:
        assert needed in copied, f"Dockerfile does not COPY {needed} (needed by pip install .)"
    # The build-context filter must not drop what is copied.
    ignore = DEPLOY / "Dockerfile.dockerignore"
    if ignore.exists():
        patterns = [
            p.strip()
            for p in ignore.read_text().splitlines()
            if p.strip() and not p.startswith("#")
        ]
        for src in copied:
            hit = [p for p in patterns if not p.startswith("!") and fnmatch.fnmatch(src, p)]
            assert not hit, f"{src} is excluded from the build context by {hit}"


def test_dockerfile_base_user_install_entrypoint():
    ins = dockerfile_instructions()
    assert ins[0] == ("FROM", "python:3.11-slim")
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), (
        "the image must run as a non-root user"
    )
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert re.search(r"pip install (\S+ )*\.(\s|$)", runs), "the image must `pip install .`"
    assert ("ENTRYPOINT", '["envios"]') in ins


# --------------------------------------------------------------------------- Prometheus


def test_promtool_check_config_passes():
    promtool = need_binary("promtool")
    proc = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_FILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rule files found" in proc.stdout + proc.stderr, "promtool checked no rule file"


def test_rule_files_are_the_project_rules_in_the_repo_and_in_the_container(prom_config, services):
    rule_files = prom_config.get("rule_files") or []
    assert rule_files, "prometheus.yml loads no rule files"
    container_cfg = flag_value(command_list(services["prometheus"]), "--config.file")
    for rf in rule_files:
        in_repo = (PROMETHEUS_FILE.parent / rf).resolve()
        assert in_repo == RULES_FILE.resolve(), f"{rf} is not alerts/envios.rules.yml from the repo"
        in_container = os.path.normpath(os.path.join(os.path.dirname(container_cfg), rf))
        assert (
            container_file_source(services, "prometheus", in_container) == RULES_FILE.resolve()
        ), f"in the container {rf} resolves to {in_container}, where the rules are not mounted"


def test_scrape_jobs_cover_every_job_the_alert_rules_use(prom_config):
    jobs = {sc["job_name"] for sc in prom_config["scrape_configs"]}
    assert {"envios-watcher", "envios-sender"} <= jobs
    used = set(re.findall(r'job\s*=\s*"([^"]+)"', RULES_FILE.read_text(encoding="utf-8")))
    assert used, "alerts/envios.rules.yml selects on no job: update this test"
    assert used <= jobs, f"alert rules use jobs with no scrape config: {sorted(used - jobs)}"


def test_scrape_and_alerting_targets_are_services_of_the_stack(prom_config, services, defaults):
    def targets(job):
        sc = next(s for s in prom_config["scrape_configs"] if s["job_name"] == job)
        return [t for c in sc["static_configs"] for t in c["targets"]]

    watcher = targets("envios-watcher")
    assert watcher == [f"watcher:{defaults['monitor']['port']}"]
    # The watcher binds 127.0.0.1 unless told otherwise: Prometheus is another container.
    assert flag_value(command_list(services["watcher"]), "--host") == "0.0.0.0"
    # The sender serves on 127.0.0.1 only; its target forwards to that port from inside
    # the sender's network namespace.
    (sender_target,) = targets("envios-sender")
    host, port = sender_target.rsplit(":", 1)
    assert host in services
    if host != "sender":
        assert services["sender"].get("network_mode") == f"service:{host}", (
            f"{host} forwards to the sender's loopback only if the sender joins"
            " its network namespace"
        )
        forward = " ".join(command_list(services[host]))
        assert f"TCP-LISTEN:{port}," in forward
        assert f"TCP:127.0.0.1:{defaults['sender']['metrics_port']}" in forward
    am = [
        t
        for a in prom_config["alerting"]["alertmanagers"]
        for c in a["static_configs"]
        for t in c["targets"]
    ]
    assert am == ["alertmanager:9093"] and "alertmanager" in services


# --------------------------------------------------------------------------- systemd


@pytest.mark.parametrize("subcommand", sorted(UNITS))
def test_unit_has_required_keys_and_runs_envios(subcommand):
    unit = parse_unit(UNITS[subcommand])
    assert {"Unit", "Service", "Install"} <= set(unit)
    for key in ("ExecStart", "Restart", "User", "EnvironmentFile"):
        assert last(unit, "Service", key), f"{UNITS[subcommand].name}: [Service] {key}= missing"
    argv = shlex.split(last(unit, "Service", "ExecStart"))
    assert os.path.isabs(argv[0]) and PurePosixPath(argv[0]).name == "envios"
    assert argv[1] == subcommand
    assert last(unit, "Service", "Restart") == "on-failure"
    assert last(unit, "Service", "User") not in ("root", "0")
    assert last(unit, "Service", "EnvironmentFile").lstrip("-") == "/etc/envios/envios.env"
    assert duration_s(last(unit, "Service", "RestartSec")) >= 1, (
        "RestartSec too short: restart storm"
    )
    assert last(unit, "Unit", "StartLimitIntervalSec") and last(unit, "Unit", "StartLimitBurst")
    # a sender that cannot start must end up failed (and alerting), not loop
    if subcommand == "send":
        assert duration_s(last(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert last(unit, "Service", "KillSignal") == "SIGTERM"
    for key, value in [
        ("NoNewPrivileges", "true"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "true"),
        ("ProtectHome", "true"),
    ]:
        assert last(unit, "Service", key) == value, (
            f"{UNITS[subcommand].name}: {key}={value} expected"
        )
    assert last(unit, "Install", "WantedBy") == "multi-user.target"


def test_units_never_upgrade_the_schema_on_start():
    for path in UNITS.values():
        unit = parse_unit(path)
        for key in ("ExecStartPre", "ExecStartPost", "ExecStart"):
            for value in unit["Service"].get(key, []):
                assert "upgrade" not in value, f"{path.name}: {key} runs a schema upgrade"


def test_sender_stop_timeout_lets_a_send_finish(defaults):
    unit = parse_unit(UNITS["send"])
    assert (
        duration_s(last(unit, "Service", "TimeoutStopSec")) > defaults["gateway"]["send_timeout_s"]
    )
    assert last(unit, "Service", "KillMode") in (None, "control-group", "mixed"), (
        "KillMode must not skip SIGTERM"
    )


def test_sender_unit_keeps_its_journal_in_its_state_directory():
    unit = parse_unit(UNITS["send"])
    env = dict(
        item.split("=", 1)
        for value in unit["Service"].get("Environment", [])
        for item in shlex.split(value)
    )
    journal = PurePosixPath(env.get("ENVIOS_SENDER_JOURNAL_DIR", ""))
    assert journal.is_absolute(), "the sender runs without a journal (docs/RELIABILITY.md)"
    # ProtectSystem=strict: only the state directory is writable, and it outlives restarts.
    state = PurePosixPath("/var/lib") / last(unit, "Service", "StateDirectory")
    assert state in journal.parents
    assert "ENVIOS_SENDER_JOURNAL_DIR" in valid_env_names()


def test_watcher_does_not_depend_on_the_sender():
    unit = parse_unit(UNITS["watch"])
    for section in ("Unit", "Install"):
        for key, values in unit.get(section, {}).items():
            for value in values:
                assert "envios-sender" not in value, f"watcher [{section}] {key}={value}"


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip(
            "systemd-analyze not installed (required keys are checked by the other unit tests)"
        )
    # verify insists that ExecStart's binary exists: point it at one that does.
    stand_in = shutil.which("envios") or shutil.which("true")
    for path in UNITS.values():
        argv0 = shlex.split(last(parse_unit(path), "Service", "ExecStart"))[0]
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8").replace(argv0, stand_in))
    proc = subprocess.run(
        ["systemd-analyze", "verify", *[str(tmp_path / p.name) for p in UNITS.values()]],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    # verify exits 0 on unknown keys and unparsable values, so its warnings count as failures.
    complaints = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if "envios-" in line or str(tmp_path) in line
    ]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- environment file

PLACEHOLDER = re.compile(r"^(CHANGE_?ME|changeme|<[^>]+>|\.\.\.|xxx+)$", re.IGNORECASE)
SECRET_KEY = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASS)$")


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert "=" in line, f"not KEY=VALUE: {line!r}"
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def test_env_example_sets_real_config_keys():
    env = env_example()
    assert {"ENVIOS_DATABASE_URL", "ENVIOS_GATEWAY_API_KEY"} <= set(env)
    unknown = set(env) - valid_env_names()
    assert not unknown, f"not config keys: {sorted(unknown)}"


def test_env_example_contains_no_real_looking_secret():
    for key, value in env_example().items():
        if SECRET_KEY.search(key):
            assert value == "" or PLACEHOLDER.match(value), (
                f"{key} looks like a real secret: use CHANGE_ME"
            )
        url = urlsplit(value)
        if url.scheme and url.password is not None:
            assert PLACEHOLDER.match(url.password), (
                f"{key}: the URL's password must be a placeholder"
            )
        # Nothing long and random-looking anywhere (tokens, keys, passwords).
        for token in re.findall(r"[A-Za-z0-9+/=_\-]{20,}", value):
            assert not (
                re.search(r"\d", token)
                and re.search(r"[a-z]", token)
                and re.search(r"[A-Z]", token)
            ), f"{key}: {token[:4]}... looks like a real secret"


# --------------------------------------------------------------------------- README


def test_deploy_readme_names_every_file():
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    files = [
        p.relative_to(DEPLOY).as_posix()
        for p in DEPLOY.rglob("*")
        if p.is_file() and p.name != "README.md" and p.name != ".env"
    ]
    assert files
    missing = [f for f in files if f not in readme and PurePosixPath(f).name not in readme]
    assert not missing, f"deploy/README.md does not mention {missing}"
