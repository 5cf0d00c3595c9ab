"""README.md's configuration table names every key of sender.config.DEFAULTS, with its default."""

from __future__ import annotations

import re
from pathlib import Path

from envios import config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ROW = re.compile(r"^\| `([a-z_.]+)` \| `([^`]*)` \|", re.MULTILINE)


def _same(text: str, value) -> bool:
    if isinstance(value, bool):
        return text == str(value).lower()
    if isinstance(value, (int, float)):
        return float(text) == float(value)
    return text == (value if value != "" else '""')


def test_every_key_is_in_the_readme_table():
    table = README[README.index("| key | default | meaning |") :]
    table = table[: table.index("\n\n")]
    for dotted in config._leaf_paths(config.DEFAULTS):
        section = dotted.rsplit(".", 1)[0]
        leaf = dotted.rsplit(".", 1)[-1]
        assert f"`{dotted}`" in table or f"`{section}.*`" in table or f"/ `{leaf}`" in table, dotted


def test_single_key_rows_show_the_default():
    rows = ROW.findall(README)
    assert len(rows) > 10
    for dotted, default in rows:
        assert _same(default, config._get_path(config.DEFAULTS, dotted)), (dotted, default)
