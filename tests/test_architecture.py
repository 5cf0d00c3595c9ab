"""One store, one domain: SQL text lives in envios/store/, state names in envios/domain.py.

Every product module (envios/, and sender/ and monitor/, installed as envios.sender and
envios.monitor) is parsed with `ast` and its string constants are read: plain strings,
the literal parts of f-strings (joined, `{}` where a value goes), never docstrings (prose).
The simulator (simulator/, envios.simulator) is left out on purpose: it stands in for the
gateways, shares no code or database with the product, and speaks the gateways' words.

- SQL text (`SELECT ... FROM`, `INSERT INTO`, `UPDATE t SET`, `DELETE FROM`, `CREATE TABLE`,
  `ALTER TABLE`, `PRAGMA`, ...) outside envios/store/ is reported with its file:line.
- A send state ('pendiente', 'enviando', 'enviado', 'error') spelled as a string outside
  envios/domain.py is reported: the whole constant, quoted inside SQL text, or quoted after
  a comparison in a piece of SQL (`" AND estado = 'enviando'"`). 'error' is
  also a plain word (a JSON field, a log field), so as a whole constant it counts where it
  is used as a state: compared (`estado == "error"`, `in ("enviado", "error")`) or written in
  the same statement as another state name (`c.get("enviado", 0) + c.get("error", 0)`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("envios", "sender", "monitor")
STORE = Path("envios/store")
DOMAIN = Path("envios/domain.py")

STATES = ("pendiente", "enviando", "enviado", "error")
ONLY_STATES = frozenset(STATES) - {"error"}  # words that mean nothing but a state

# Upper-case keywords in SQL's shape; prose and log lines write these words in lower case.
SQL = re.compile(
    r"\bSELECT\b[\s\S]*?\bFROM\b"
    r"|\bINSERT\s+(?:IGNORE\s+|OR\s+\w+\s+)?INTO\b"
    r"|\bREPLACE\s+INTO\b"
    r"|\bUPDATE\s+[\w.`]+\s+SET\b"
    r"|\bDELETE\s+FROM\b"
    r"|\b(?:CREATE|ALTER|DROP)\s+(?:TABLE|(?:UNIQUE\s+)?INDEX|VIEW)\b"
    r"|\bPRAGMA\s+\w+"
    r"|\bSET\s+SESSION\b"
)
# A statement written in lower case: it starts with its verb and has its shape.
SQL_LOWER = re.compile(
    r"^\s*(?:select\b[\s\S]*\bfrom\b|insert\s+into\b|update\s+\w+\s+set\b|delete\s+from\b"
    r"|(?:create|alter)\s+table\b)",
    re.IGNORECASE,
)
QUOTED_STATE = re.compile(r"'(" + "|".join(STATES) + r")'")
# A fragment of SQL comparing with a quoted state: `estado = 'enviando'`, `IN ('enviado', 'error')`.
COMPARED_STATE = re.compile(
    r"(?:=|<>|!=|\bIN\s*\()\s*(?:'[^']*'\s*,\s*)*'(?:" + "|".join(STATES) + r")'"
)


STATE_LITERAL = "state literal outside envios/domain.py"


@dataclass(frozen=True)
class Offence:
    path: str
    line: int
    what: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}: {self.text[:90]!r}"


def is_sql(text: str) -> bool:
    return bool(SQL.search(text) or SQL_LOWER.search(text))


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                ids.add(id(body[0].value))
    return ids


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _statement_of(node: ast.AST, parents: dict[int, ast.AST]) -> ast.AST:
    while not isinstance(node, ast.stmt) and id(node) in parents:
        node = parents[id(node)]
    return node


def _compared(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    """An operand of ==, !=, in, not in (directly, or inside the tuple/list/set compared)."""
    parent = parents.get(id(node))
    if isinstance(parent, ast.Tuple | ast.List | ast.Set):
        node, parent = parent, parents.get(id(parent))
    return isinstance(parent, ast.Compare)


def strings(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """(node, text) of every string constant, f-strings joined, docstrings left out."""
    skip = _docstrings(tree)
    found, inside_fstrings = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            found.append((node, "".join(str(p) for p in parts)))
            inside_fstrings.update(id(v) for v in node.values)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skip
            and id(node) not in inside_fstrings
        ):
            found.append((node, node.value))
    return sorted(found, key=lambda pair: (pair[0].lineno, pair[0].col_offset))


def check_source(source: str, path: str) -> list[Offence]:
    """The offences of one module; `path` is relative to the repository (it decides the rules)."""
    tree = ast.parse(source, filename=path)
    parents = _parents(tree)
    in_store = Path(path).is_relative_to(STORE)
    in_domain = Path(path) == DOMAIN
    texts = strings(tree)
    offences = []
    for node, text in texts:
        sql = is_sql(text)
        if sql and not in_store:
            offences.append(Offence(path, node.lineno, "SQL outside envios/store", text))
        if in_domain:
            continue
        if text in ONLY_STATES:
            offences.append(Offence(path, node.lineno, STATE_LITERAL, text))
        elif text == "error":
            statement = _statement_of(node, parents)
            siblings = {
                s for n, s in texts if s in ONLY_STATES and _statement_of(n, parents) is statement
            }
            if _compared(node, parents) or siblings:
                offences.append(Offence(path, node.lineno, STATE_LITERAL, text))
        elif QUOTED_STATE.search(text) if sql else COMPARED_STATE.search(text):
            offences.append(Offence(path, node.lineno, "state literal in SQL text", text))
    return offences


def product_modules() -> list[Path]:
    return sorted(p for top in PRODUCT for p in (ROOT / top).rglob("*.py"))


def check_product() -> list[Offence]:
    offences = []
    for module in product_modules():
        path = module.relative_to(ROOT).as_posix()
        offences += check_source(module.read_text(encoding="utf-8"), path)
    return offences


def test_the_product_is_read():
    """The walk finds the product: both processes, the core, the store and the domain."""
    paths = {p.relative_to(ROOT).as_posix() for p in product_modules()}
    assert {
        "envios/domain.py",
        "envios/store/watching.py",
        "sender/webhooks.py",
        "monitor/queries.py",
    } <= paths
    assert not any(p.startswith("simulator/") for p in paths)


def test_no_sql_outside_the_store_and_no_state_literal_outside_the_domain():
    offences = check_product()
    assert not offences, f"{len(offences)} offence(s):\n" + "\n".join(map(str, offences))


# -- the checker itself can fail ----------------------------------------------------------------

SYNTHETIC = '''"""A module docstring may say SELECT id FROM t WHERE estado = 'enviando'."""
ROWS = "SELECT id FROM ll_envios_whatsapp WHERE campania_id = %(campania_id)s"
table = "ll_envios_whatsapp"
LOCKED = f"SELECT {table} FROM x FOR UPDATE"
MOVE = ("UPDATE ll_envios_whatsapp SET estado = %s"
        " WHERE id = %s")
WIPE = "delete from envios_audit where id = 1"
TAIL = " AND estado = 'pendiente'"
log_line = "could not update the row; select another session from the list"
HELP = "the upgrade appends 'enviando' to the estado ENUMs"


def f(row, counts, body):
    """Docstrings are prose: 'enviado' here is fine."""
    if row["estado"] == "enviando":
        return body.get("error")  # a JSON field, not a state
    if row["estado"] in ("enviado", "error"):
        return counts.get("enviado", 0) + counts.get("error", 0)
    return {"error": "no such webhook"}
'''


def test_the_checker_reports_sql_and_state_literals_with_file_and_line():
    got = [(o.line, o.what) for o in check_source(SYNTHETIC, "sender/example.py")]
    assert got == [
        (2, "SQL outside envios/store"),
        (4, "SQL outside envios/store"),
        (5, "SQL outside envios/store"),
        (7, "SQL outside envios/store"),
        (8, "state literal in SQL text"),
        (15, "state literal outside envios/domain.py"),
        (17, "state literal outside envios/domain.py"),
        (17, "state literal outside envios/domain.py"),
        (18, "state literal outside envios/domain.py"),
        (18, "state literal outside envios/domain.py"),
    ]
    assert str(check_source(SYNTHETIC, "sender/example.py")[0]).startswith("sender/example.py:2: ")


def test_the_store_may_hold_sql_but_not_state_literals():
    got = [(o.line, o.what) for o in check_source(SYNTHETIC, "envios/store/example.py")]
    assert (2, "SQL outside envios/store") not in got
    assert (8, "state literal in SQL text") in got
    sql_in_store = "X = \"SELECT id FROM t WHERE estado = 'enviando'\"\n"
    assert [o.what for o in check_source(sql_in_store, "envios/store/x.py")] == [
        "state literal in SQL text"
    ]


def test_the_domain_may_name_the_states():
    assert check_source('PENDIENTE = "pendiente"\nERROR = "error"\n', "envios/domain.py") == []
    assert len(check_source('PENDIENTE = "pendiente"\n', "envios/config.py")) == 1
