"""envios: a WhatsApp campaign sender and a Prometheus watcher sharing one database.

One import namespace. This package is the core both processes use and neither
owns (config, clock, errors, the domain, the store, the CLI); `envios.sender`
(the repository's sender/ folder), `envios.monitor` (monitor/) and
`envios.simulator` (simulator/) are mapped into it by pyproject.toml.
"""
