"""Errors an operator sees as one clear line (the CLI prints them, never a traceback)."""


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
    """The server accepted the connection but did not answer within the read/write timeout (frozen?)."""


class TransactionConflict(DatabaseError):
    """Deadlock, lock wait timeout or a busy SQLite file: retrying is safe."""


class QueryTimeout(DatabaseError):
    """A statement ran past the time limit it was given and was abandoned."""
