"""SimulatorServer: the simulated gateway on a real socket, in background threads.

    sim = SimulatorServer(host="127.0.0.1", port=0, seed=1)   # port 0 = pick a free one
    sim.start()                 # non-blocking
    sim.base_url                # "http://127.0.0.1:PORT"
    sim.state                   # SimState: ledger, set_session, set_faults, sends_received
    sim.refuse_for(2.0)         # not listening for 2 s: clients get ECONNREFUSED
    sim.stop()

"Refused connection" is simulated for real: the listening socket is closed and
every open connection is hung up on, then the same port is bound again later.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Mapping

from .dialects import Dialects
from .faults import Faults
from .handler import SimRequestHandler
from .state import SimState

log = logging.getLogger("simulator")


class _Listener(socketserver.ThreadingMixIn, socketserver.TCPServer):
    # TCPServer rather than HTTPServer: HTTPServer.server_bind does a reverse DNS
    # lookup (getfqdn) that can hang on a machine without a resolver.
    daemon_threads = True  # a stuck client must never keep the process alive
    block_on_close = False
    allow_reuse_address = True  # re-bind the same port right after refuse_for
    request_queue_size = 512  # a benchmark opens many connections at once

    def __init__(self, address, owner: SimulatorServer):
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, SimRequestHandler)

    def handle_error(self, request, client_address) -> None:
        log.debug("error serving %s", client_address, exc_info=True)


class SimulatorServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        faults: Faults | Mapping | None = None,
        sessions: Mapping[int, str] | None = None,
        default_state: str = "READY",
        api_key: str | None = None,
        state: SimState | None = None,
    ):
        self.host = host
        self.port = port  # becomes the real port on the first start() when 0
        self.state = state or SimState(
            seed=seed,
            faults=faults,
            sessions=sessions,
            default_state=default_state,
            api_key=api_key,
        )
        # WAHA / Evolution / Cloud API shapes in front of the same state
        self.dialects = Dialects(self.state)
        self._lock = threading.RLock()
        self._listener: _Listener | None = None
        self._running = False  # between start() and stop(), listening or refusing
        self._stopping = threading.Event()  # wakes handlers sleeping on latency/slow sends
        self._reopen_timer: threading.Timer | None = None
        self._refusing_until: float | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self.connections_accepted = 0  # shows whether clients reuse keep-alive connections

    # ----- public API ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._listener is not None

    @property
    def refusing(self) -> bool:
        return self._running and self._listener is None

    def start(self) -> SimulatorServer:
        """Bind and serve in background threads; returns at once. Raises OSError
        if the port cannot be bound. Calling it while running does nothing."""
        with self._lock:
            if self._running:
                return self
            self._stopping.clear()
            self._listen()
            self._running = True
        log.info("gateway-sim listening on %s (seed %s)", self.base_url, self.state.seed)
        return self

    def stop(self) -> None:
        """Stop listening, hang up on every connection, wake sleeping handlers."""
        with self._lock:
            self._running = False
            self._cancel_reopen()
            self._stopping.set()
            self._unlisten()
        log.info("gateway-sim on port %s stopped", self.port)

    def refuse_for(self, seconds: float, keep: socket.socket | None = None) -> None:
        """Close the listening socket (and open connections, except ``keep``) for
        ``seconds``, then listen on the same port again. Returns at once. A second
        call while refusing replaces the deadline."""
        if seconds <= 0:
            raise ValueError("seconds must be > 0")
        with self._lock:
            if not self._running:
                raise RuntimeError("the simulator is not running")
            self._unlisten(keep=keep)
            self._cancel_reopen()
            self._refusing_until = time.monotonic() + seconds
            self._schedule_reopen(seconds)
        log.info("gateway-sim refusing connections for %.1fs", seconds)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- listening socket ------------------------------------------------------

    def _listen(self) -> None:
        listener = _Listener((self.host, self.port), self)
        self.port = listener.server_address[1]
        self._listener = listener
        threading.Thread(
            target=listener.serve_forever,
            kwargs={"poll_interval": 0.05},  # how fast shutdown() is noticed
            name=f"gateway-sim:{self.port}",
            daemon=True,
        ).start()

    def _unlisten(self, keep: socket.socket | None = None) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown()
            listener.server_close()
        with self._conns_lock:
            conns = [c for c in self._conns if c is not keep]
        for c in conns:
            _hang_up(c)

    def _schedule_reopen(self, delay: float) -> None:
        timer = threading.Timer(delay, self._reopen)
        timer.daemon = True
        self._reopen_timer = timer
        timer.start()

    def _cancel_reopen(self) -> None:
        if self._reopen_timer is not None:
            self._reopen_timer.cancel()
            self._reopen_timer = None
        self._refusing_until = None

    def _reopen(self) -> None:
        with self._lock:
            if not self._running or self._listener is not None:
                return
            try:
                self._listen()
            except OSError as exc:
                # Someone else took the port meanwhile; keep trying rather than die.
                log.error(
                    "gateway-sim cannot listen on port %s again (%s); retrying", self.port, exc
                )
                self._schedule_reopen(0.2)
                return
            self._refusing_until = None
        log.info("gateway-sim listening again on %s", self.base_url)

    # ----- open connections (the handler registers them) ------------------------

    def _track(self, conn: socket.socket, listener: _Listener) -> None:
        with self._conns_lock:
            self._conns.add(conn)
            self.connections_accepted += 1
        # Accepted just before the listener closed: this connection belongs to a
        # "dead" gateway and must not be served.
        if listener is not self._listener:
            _hang_up(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.discard(conn)


def _hang_up(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
