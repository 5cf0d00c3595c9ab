"""Loopback fakes of the API gateways (tests/sender/api_gateways.py), one per test."""

from __future__ import annotations

import pytest
from envios.sender.gateways.base import Outcome

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


def answered_as_the_table_says(fake, result, outcome, row) -> None:
    """A send case's answer: the table's outcome, the id the gateway gave, the row in the reason."""
    assert result.outcome is outcome
    if outcome is Outcome.SENT:
        assert result.message_id == fake.ledger[0]["message_id"]
    if outcome not in (Outcome.SENT, Outcome.SENT_WITHOUT_ID):
        assert row in result.reason
