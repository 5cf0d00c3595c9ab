"""The loopback gateway fixture (tests/sender) for the store tests that run a real send."""

from tests.sender.conftest import gateway  # noqa: F401  (a fixture)
