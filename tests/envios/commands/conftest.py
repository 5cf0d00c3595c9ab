"""The watcher-side fixtures (tests/monitor) serve the commands that read what the watcher reads."""

from tests.monitor.conftest import build, config, watchers  # noqa: F401  (fixtures)
