"""The watcher as one object: refresher thread + collector + /metrics and /healthz.

In-process use (demo, end-to-end tests):

    from envios.monitor.watcher import Watcher
    watcher = Watcher(config, port=0).start()   # binds 127.0.0.1:<free port>, starts refreshing
    watcher.wait_for_refreshes(1)               # optional: until the first refresh is done
    print(watcher.url)                          # http://127.0.0.1:PORT  (/metrics, /healthz)
    ...
    watcher.stop()

or `with Watcher(config, port=0) as watcher: ...` (start/stop). Without a
server (`start(http=False)`), `watcher.exposition()` gives what /metrics
would serve; `watcher.refresh()` runs one refresh synchronously.
"""

from __future__ import annotations

import logging

from envios.monitor.collector import exposition, make_registry
from envios.monitor.http import HttpServer, make_app
from envios.monitor.refresher import Refresher

from envios.errors import ConfigError

log = logging.getLogger("envios.watch")


class Watcher:
    def __init__(
        self, config, *, host: str = "127.0.0.1", port: int | None = None, **refresher_options
    ):
        self.config = config
        self.host = host
        self.requested_port = int(config.monitor.port if port is None else port)
        self.refresher = Refresher(config, **refresher_options)
        self.registry = make_registry(self.refresher)
        self.http: HttpServer | None = None

    # -- synchronous use ----------------------------------------------------------
    def refresh(self, *, raise_unavailable: bool = False) -> bool:
        return self.refresher.refresh(raise_unavailable=raise_unavailable)

    def exposition(self) -> bytes:
        return exposition(self.registry)

    def health(self) -> tuple[bool, str]:
        return self.refresher.health()

    @property
    def state(self):
        return self.refresher.state

    def wait_for_refreshes(self, count: int = 1, timeout: float = 30.0) -> bool:
        return self.refresher.wait_for_refreshes(count, timeout)

    # -- background use -----------------------------------------------------------
    def start(self, *, http: bool = True, refresh: bool = True) -> Watcher:
        if http and self.http is None:
            try:
                self.http = HttpServer(
                    make_app(self.exposition, self.health), self.host, self.requested_port
                )
            # port in use, address not ours: one line, like sender.metrics_port
            except OSError as exc:
                raise ConfigError(
                    f"config key monitor.port: cannot listen on {self.host}:{self.requested_port}"
                    f" ({exc.strerror or exc})"
                ) from None
            self.http.start()
            log.info(
                "watcher serving http://%s:%d/metrics and /healthz (refresh every %gs, %s)",
                self.host,
                self.http.port,
                self.refresher.refresh_s,
                self.refresher.database.describe(),
            )
        if refresh:
            self.refresher.start()
        return self

    @property
    def port(self) -> int | None:
        return self.http.port if self.http else None

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.http.port}" if self.http else None

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None
        self.refresher.stop()

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
