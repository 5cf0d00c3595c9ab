"""The kill switch: `sender.enabled` (config file) or ENVIOS_SENDER_ENABLED, re-read at every check.

`enabled()` is called before every claim. It re-reads the config file when its
modification time or size changed, and the environment variable every time, so
editing `sender.enabled: false` into config.yaml stops all sending at the next
check without a restart. A config file that stops being readable counts as
"off" (fail closed): an operator editing the switch must never start a flood
by a typo. Every change is logged once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping

from envios import config as config_module
from envios.errors import ConfigError

log = logging.getLogger("envios.sender")

ENV_VAR = config_module.env_var_name("sender.enabled")


class KillSwitch:
    def __init__(
        self,
        config_path: str | None = None,
        *,
        initial: bool = True,
        read_file: bool = True,
        environ: Mapping[str, str] | None = None,
        on_change: Callable[[bool], None] | None = None,
    ):
        self.path = config_path
        self.read_file = read_file
        self._environ = environ
        self._lock = threading.Lock()
        self._file_key: tuple | None = None
        self._env_value: str | None = None
        self._value = bool(initial)
        self._base = bool(initial)  # the value when neither file nor env var says otherwise
        self._why = "sender.enabled"
        self._on_change = on_change
        self._known = False

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _file_stat(self) -> tuple | None:
        path = self.path or (config_module.DEFAULT_PATH if self.read_file else None)
        if not path:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return ("missing", path)
        return (path, st.st_mtime_ns, st.st_size)

    def enabled(self) -> bool:
        with self._lock:
            env = self._env()
            env_value = env.get(ENV_VAR)
            file_key = self._file_stat() if self.read_file else None
            if self._known and env_value == self._env_value and file_key == self._file_key:
                return self._value
            self._env_value, self._file_key = env_value, file_key
            value, why = self._read(env)
            changed = self._known and value != self._value
            first = not self._known
            self._value, self._why, self._known = value, why, True
        if changed or (first and not value):
            if value:
                log.warning("event=kill_switch state=on: sending enabled again (%s)", why)
            else:
                log.warning("event=kill_switch state=off: sending stopped, no new claims (%s)", why)
        if (changed or first) and self._on_change:
            self._on_change(value)
        return value

    def _read(self, env: Mapping[str, str]) -> tuple[bool, str]:
        if self.read_file:
            try:
                cfg = config_module.load(self.path, environ=dict(env))
            except ConfigError as exc:
                return False, f"config unreadable, failing closed: {exc}"
            source = (
                f"{ENV_VAR}={env[ENV_VAR]}" if ENV_VAR in env else f"sender.enabled in {cfg.source}"
            )
            return bool(cfg.sender.enabled), source
        if ENV_VAR in env:
            try:
                enabled = config_module.coerce_bool("sender.enabled", env[ENV_VAR])
                return enabled, f"{ENV_VAR}={env[ENV_VAR]}"
            except ConfigError as exc:
                return False, f"failing closed: {exc}"
        return self._base, "sender.enabled in the given config"

    @property
    def reason(self) -> str:
        return self._why


def static(config, environ: Mapping[str, str] | None = None) -> KillSwitch:
    """A switch for in-process senders: the given config's value, overridable by the env var."""
    return KillSwitch(read_file=False, initial=bool(config.sender.enabled), environ=environ)
