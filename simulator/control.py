"""The simulator's own JSON control API under /_sim/ (same port as the gateway).

    GET  /_sim/ledger[?cliente_id=N][&to=DIGITS][&since=SEQ]   deliveries
    GET  /_sim/stats                                           counters, sessions, faults, seed
    GET  /_sim/faults        POST /_sim/faults {...}           read / change fault settings
    GET  /_sim/sessions      POST /_sim/session {"cliente_id": 51, "state": "DISCONNECTED", "for_s":
    5}
    POST /_sim/reset                                           back to the startup state
    POST /_sim/refuse {"for_s": 3}                             stop listening for a while

Behind the same API key as /send and /status when one is set (--api-key): the ledger
holds full numbers and texts. Without a key (the default, on loopback) they are open.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .state import Reply, error_reply, json_reply, parse_cliente_id

if TYPE_CHECKING:
    import socket

    from .server import SimulatorServer


def _body(body: bytes) -> dict:
    if not body:
        return {}
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the body must be JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("the body must be a JSON object")
    return obj


def handle(
    owner: SimulatorServer, conn: socket.socket, method: str, path: str, query: dict, body: bytes
) -> Reply:
    try:
        return _route(owner, conn, method, path, query, _body(body))
    except (ValueError, TypeError) as exc:
        return error_reply(400, "BAD_REQUEST", str(exc) or "bad request")


def _route(owner: SimulatorServer, conn, method: str, path: str, query: dict, data: dict) -> Reply:
    state = owner.state
    route = (method, path)
    if route == ("GET", "/_sim/ledger"):
        cid = parse_cliente_id(query["cliente_id"]) if "cliente_id" in query else None
        since = int(query.get("since", 0))
        entries = [e for e in state.ledger_for(cid, query.get("to")) if e["seq"] > since]
        return json_reply(200, {"count": len(entries), "entries": entries})
    if route == ("GET", "/_sim/stats"):
        stats = state.stats()
        stats["refusing"] = owner.refusing
        stats["connections_accepted"] = owner.connections_accepted
        return json_reply(200, stats)
    if route == ("GET", "/_sim/faults"):
        return json_reply(200, state.faults.as_dict())
    if route == ("POST", "/_sim/faults"):
        return json_reply(200, state.set_faults(**data))
    if route == ("GET", "/_sim/sessions"):
        return json_reply(200, state.sessions())
    if route == ("POST", "/_sim/session"):
        if "cliente_id" not in data or "state" not in data:
            raise ValueError(
                'give {"cliente_id": N, "state": "READY|CONNECTING|AWAITING_QR|DISCONNECTED|ERROR"}'
            )
        return json_reply(
            200,
            state.set_session(
                data["cliente_id"], data["state"], data.get("for_s"), data.get("then", "READY")
            ),
        )
    if route == ("POST", "/_sim/reset"):
        state.reset()
        return json_reply(200, {"ok": True})
    if route == ("POST", "/_sim/refuse"):
        for_s = data.get("for_s")
        if isinstance(for_s, bool) or not isinstance(for_s, (int, float)) or for_s <= 0:
            raise ValueError('give {"for_s": SECONDS} with SECONDS > 0')
        # The listener is closed before this answer leaves, so a client that has
        # read the answer is sure its next connection attempt is refused.
        owner.refuse_for(float(for_s), keep=conn)
        return json_reply(200, {"ok": True, "refusing_for_s": for_s}, close=True)
    return error_reply(404, "NOT_FOUND", f"no control route {method} {path}")
