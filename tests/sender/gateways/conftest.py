"""Loopback fakes of the API gateways (tests/sender/api_gateways.py), one per test."""

from __future__ import annotations

import pytest

from tests.sender.api_gateways import FakeApi


@pytest.fixture
def fake_api(request):
    fakes = []

    def make(kind: str, **kw) -> FakeApi:
        fake = FakeApi(kind, **kw)
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        fake.stop()


def every_rule_tested(rules, cases) -> None:
    """Each row of an adapter's outcome table is the expected answer of at least one case."""
    covered = {meaning for *_rest, meaning in cases}
    missing = [rule.meaning for rule in rules if rule.meaning not in covered]
    assert not missing, f"outcome table rows without a test: {missing}"
