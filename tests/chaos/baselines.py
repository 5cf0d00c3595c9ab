"""The two orders the chaos suite compares envios with, as minimal sender processes.

    python -m tests.chaos.baselines legacy DB_URL GATEWAY_URL CLIENTE_ID   mark enviado, then send
    python -m tests.chaos.baselines naive  DB_URL GATEWAY_URL CLIENTE_ID   send, then mark enviado

`legacy` is the order of the original scheduler (a send that fails or a process
that dies after the mark is a phantom); `naive` is the obvious fix (a timeout
that delivered, or a process that dies before the mark, is sent again). Neither
writes history, claims or a journal. They exist only to be measured.
"""

from __future__ import annotations

import datetime as dt
import sys
import time

import requests

from envios.errors import EnviosError
from envios.store.connector import Database

NEXT = (
    "SELECT e.id, e.telefono_wapp FROM ll_envios_whatsapp e"
    " JOIN ll_programaciones p ON p.campania_id = e.campania_id"
    " WHERE e.estado = 'pendiente' AND p.cliente_id = %s ORDER BY e.id LIMIT 1"
)
MARK = "UPDATE ll_envios_whatsapp SET estado = 'enviado', fecha_envio = %s WHERE id = %s"


def run(order: str, db_url: str, gateway_url: str, cliente_id: int) -> None:
    session = requests.Session()
    while True:
        try:
            with Database(db_url).connect() as conn:
                while (row := conn.query_one(NEXT, (cliente_id,))) is not None:
                    if order == "legacy":
                        conn.execute(MARK, (dt.datetime.now().replace(microsecond=0), row["id"]))
                    try:
                        answer = session.post(
                            f"{gateway_url}/send",
                            timeout=1.0,
                            headers={"X-Cliente-Id": str(cliente_id)},
                            json={
                                "cliente_id": cliente_id,
                                "to": row["telefono_wapp"],
                                "message": "Hola",
                            },
                        )
                        ok = answer.status_code == 200
                    except requests.RequestException:
                        ok = False
                    if order == "naive" and ok:
                        conn.execute(MARK, (dt.datetime.now().replace(microsecond=0), row["id"]))
                    time.sleep(0.05)
            return
        except EnviosError:
            time.sleep(0.5)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
