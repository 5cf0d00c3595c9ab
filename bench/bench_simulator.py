"""How many sends per second the gateway simulator sustains on loopback.

    python bench/bench_simulator.py [--sends 5000] [--procs 2] [--threads 8] [--client
    http.client|requests]

Each server runs in its own process; the load comes from --procs client
processes x --threads threads, each thread holding one keep-alive connection
and doing POST /send like the sender's adapter (its own cliente_id). The same
client loop is run against two trivial servers that return a fixed JSON reply,
so the simulator's figure can be read as a ratio of what the transport alone
gives on this machine:

    stdlib-trivial    http.server ThreadingHTTPServer, HTTP/1.1 keep-alive
    waitress-trivial  waitress (the production WSGI server we could have used)

Note: client and server share the machine's cores, so the figures are a floor
for the server, not its ceiling.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPLY = b'{"ok":true,"message_id":"true_5491123456789@c.us_3EB0000000000000000"}'


# ----- trivial baseline servers (run in a child process via --serve) -------------


def serve_stdlib() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(REPLY)))
            self.end_headers()
            self.wfile.write(REPLY)

        def log_message(self, *a):
            pass

    class S(ThreadingHTTPServer):
        request_queue_size = 512

        def server_bind(self):  # skip the reverse DNS lookup of HTTPServer
            import socketserver

            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    srv = S(("127.0.0.1", 0), H)
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


def serve_waitress() -> None:
    import socket

    import waitress

    def app(environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(REPLY)))]
        )
        return [REPLY]

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    waitress.serve(app, host="127.0.0.1", port=port, threads=8, backlog=512, _quiet=True)


# ----- load generator --------------------------------------------------------------


def _thread_loop(
    port: int, cliente_id: int, n: int, client: str, out: list, ready: threading.Barrier, go
) -> None:
    body_tpl = '{"cliente_id":%d,"to":"54911%08d","message":"Hola, esto es una prueba de carga"}'
    headers = {"Content-Type": "application/json", "X-Cliente-Id": str(cliente_id)}
    ok = bad = 0
    if client == "requests":
        import requests

        session = requests.Session()
        url = f"http://127.0.0.1:{port}/send"

        def post(body: str) -> int:
            return session.post(url, data=body, headers=headers, timeout=30).status_code
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def post(body: str) -> int:
            conn.request("POST", "/send", body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            return r.status

    post(body_tpl % (cliente_id, 0))  # warm-up: the connection is open before the clock starts
    ready.wait()
    go.wait()
    for i in range(1, n + 1):
        if post(body_tpl % (cliente_id, i)) == 200:
            ok += 1
        else:
            bad += 1
    out.append((ok, bad))


def _proc(
    port: int, first_cid: int, per_thread: list[int], client: str, ready_q, go, result_q
) -> None:
    go_local = threading.Event()
    barrier = threading.Barrier(len(per_thread) + 1)
    out: list = []
    threads = [
        threading.Thread(
            target=_thread_loop, args=(port, first_cid + k, n, client, out, barrier, go_local)
        )
        for k, n in enumerate(per_thread)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    ready_q.put(1)
    go.wait()
    go_local.set()
    for t in threads:
        t.join()
    result_q.put((sum(o for o, _ in out), sum(b for _, b in out)))


def drive(port: int, sends: int, procs: int, threads: int, client: str) -> tuple[float, int, int]:
    total_threads = procs * threads
    shares = [
        sends // total_threads + (1 if i < sends % total_threads else 0)
        for i in range(total_threads)
    ]
    ctx = mp.get_context("spawn")  # fork after a previous round's queue threads can deadlock
    ready_q, result_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    ps = [
        ctx.Process(
            target=_proc,
            args=(
                port,
                1000 + p * threads,
                shares[p * threads : (p + 1) * threads],
                client,
                ready_q,
                go,
                result_q,
            ),
        )
        for p in range(procs)
    ]
    for p in ps:
        p.start()
    for _ in ps:
        ready_q.get(timeout=60)
    t0 = time.perf_counter()
    go.set()
    results = [result_q.get(timeout=600) for _ in ps]
    elapsed = time.perf_counter() - t0
    for p in ps:
        p.join()
    return elapsed, sum(r[0] for r in results), sum(r[1] for r in results)


def start_server(cmd: list[str]) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env
    )
    line = proc.stdout.readline()
    if "listening on http://" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {cmd} printed {line!r}")
    return proc, int(line.strip().rsplit(":", 1)[1])


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sends", type=int, default=5000)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument(
        "--threads", type=int, default=8, help="keep-alive connections per client process"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the targets this many times; report the median",
    )
    ap.add_argument("--client", choices=["http.client", "requests"], default="http.client")
    ap.add_argument(
        "--only", choices=["sim", "stdlib-trivial", "waitress-trivial"], action="append"
    )
    ap.add_argument("--serve", choices=["stdlib", "waitress"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve == "stdlib":
        serve_stdlib()
        return 0
    if args.serve == "waitress":
        serve_waitress()
        return 0

    me = [sys.executable, os.path.abspath(__file__)]
    targets = {
        "sim": [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            "0",
            "--seed",
            "1",
            "--log-level",
            "WARNING",
        ],
        "stdlib-trivial": me + ["--serve", "stdlib"],
        "waitress-trivial": me + ["--serve", "waitress"],
    }
    print(
        f"{args.sends} sends, {args.procs} client procs x {args.threads} keep-alive connections, "
        f"client={args.client}, cpus={os.cpu_count()}, python {sys.version.split()[0]}"
    )
    runs: dict[str, list[float]] = {}
    for rnd in range(args.rounds):
        for name, cmd in targets.items():
            if args.only and name not in args.only:
                continue
            proc, port = start_server(cmd)
            try:
                elapsed, ok, bad = drive(port, args.sends, args.procs, args.threads, args.client)
                extra = ""
                if name == "sim":
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request("GET", "/_sim/stats")
                    stats = json.loads(conn.getresponse().read())
                    warmups = args.procs * args.threads
                    extra = f"  ledger={stats['delivered']} (expected {args.sends + warmups})"
                    if stats["delivered"] != args.sends + warmups:
                        bad += 1
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            runs.setdefault(name, []).append(ok / elapsed)
            print(
                f"[{rnd + 1}] {name:18s} {ok / elapsed:8.0f} sends/s  "
                f"({ok} ok, {bad} bad, {elapsed:.2f}s){extra}"
            )
    rates = {name: statistics.median(r) for name, r in runs.items()}
    if args.rounds > 1:
        for name, rate in rates.items():
            print(f"median {name:18s} {rate:8.0f} sends/s")
    if "sim" in rates:
        for base in ("stdlib-trivial", "waitress-trivial"):
            if base in rates:
                print(f"sim / {base}: {rates['sim'] / rates[base]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
