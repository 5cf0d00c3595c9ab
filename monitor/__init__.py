"""Watcher: exports gauges from the shared database and auto-pauses campaigns."""
