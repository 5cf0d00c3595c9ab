"""What every HTTP adapter (`session_manager`, `waha`, `evolution`, `cloud_api`) shares: its
settings and one pooled `requests.Session` for all session workers.

Connect timeout = gateway.status_timeout_s (a gateway that does not even accept the connection
is unreachable: nothing was sent); the HTTP stack never retries, since a retried send can deliver
twice. An adapter names in RETRIED_ONCE the idempotent GET paths where one retry of a connection
the gateway closed while idle is harmless. What differs stays in each adapter: how the API key is
sent and its outcome table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from envios.sender.gateways import retry_after
from envios.sender.gateways.base import Gateway
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


def no_retry() -> Retry:
    return Retry(total=0, connect=0, read=0, redirect=0, status=0)


def one_get_retry() -> Retry:
    return Retry(total=1, connect=1, read=1, redirect=0, status=0, allowed_methods={"GET"})


def pooled_session(
    base_url: str, *, client_id: str, pool_size: int, retried_once: tuple[str, ...] = ()
) -> requests.Session:
    """A session for `base_url` (without a trailing slash): no retry below it, one retry of a GET
    below each path of `retried_once`."""
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment between us and the gateway
    mounts = [("/", no_retry())] + [(path, one_get_retry()) for path in retried_once]
    for path, retries in mounts:
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=retries)
        session.mount(base_url + path, adapter)
    session.headers["User-Agent"] = f"envios-sender/{client_id}" if client_id else "envios-sender"
    session.headers["Accept"] = "application/json"
    return session


def parse_json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def text_id(value: Any) -> str | None:
    """A message id given as a string, a number or a whatsapp-web.js id object."""
    if isinstance(value, Mapping):
        value = value.get("_serialized")
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


class HttpGateway(Gateway):
    """base_url, timeouts, the API key (never shown) and the pooled session."""

    RETRIED_ONCE: tuple[str, ...] = ()  # paths below base_url where a GET is retried once
    # gateway.max_retry_after_s (build_gateway sets it)
    max_retry_after_s = retry_after.DEFAULT_MAX_S

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "",
        send_timeout_s: float = 60.0,
        status_timeout_s: float = 5.0,
        client_id: str = "",
        pool_size: int = 32,
    ):
        self.base_url = base_url.rstrip("/")
        self.send_timeout_s = float(send_timeout_s)
        self.status_timeout_s = float(status_timeout_s)
        self._api_key = api_key or ""
        self.session = pooled_session(
            self.base_url, client_id=client_id, pool_size=pool_size, retried_once=self.RETRIED_ONCE
        )

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.base_url!r})"

    @classmethod
    def from_config(cls, config, client_id: str = "", pool_size: int = 32, **own) -> HttpGateway:
        """`build(config, client_id, pool_size)` of an adapter; `own`: its own settings."""
        gw = config.gateway
        return cls(
            gw.base_url,
            api_key=gw.api_key,
            send_timeout_s=gw.send_timeout_s,
            status_timeout_s=gw.status_timeout_s,
            client_id=client_id,
            pool_size=pool_size,
            **own,
        )

    def close(self) -> None:
        self.session.close()
