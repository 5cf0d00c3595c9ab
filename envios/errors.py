"""Errors an operator sees as one clear line (the CLI prints them, never a traceback)."""

from __future__ import annotations

from collections.abc import Iterator


class EnviosError(Exception):
    """A problem the operator can act on. `exit_code` is what the CLI returns."""

    exit_code = 1


class ConfigError(EnviosError):
    exit_code = 2


class ForbiddenTransition(EnviosError):
    """A state change the state machine does not allow (e.g. enviado -> pendiente)."""


class StaleTransition(EnviosError):
    """The row was not in the expected state any more: someone else moved it first."""


class DatabaseError(EnviosError):
    """A database operation failed; the message names no password."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached, or refused our credentials."""


class DatabaseNotAnswering(DatabaseUnavailable):
    """The server accepted the connection but did not answer within the read/write timeout
    (frozen?)."""


class TransactionConflict(DatabaseError):
    """Deadlock, lock wait timeout or a busy SQLite file: retrying is safe."""


class QueryTimeout(DatabaseError):
    """A statement ran past the time limit it was given and was abandoned."""


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it: its cause, its context, exceptions among its
    args and a `reason` (urllib3 wraps the socket's error in MaxRetryError.reason), once each."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [a for a in item.args if isinstance(a, BaseException)]
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None)]
