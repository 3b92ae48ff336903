"""message.parse_time: exactly the RFC 3339 date-time of PROTOCOL.md §7.1, one parser for all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentmailbox import InvalidInput
from agentmailbox.message import iso, parse_expiry, parse_time

NOT_RFC3339 = ["20300101T000000Z", "2030-W01-1T00:00:00Z", "2030-001T00:00:00Z",
               "2030-01-01T00:00Z", "2030-01-01 00:00:00Z", "2030-01-01t00:00:00Z",
               "2030-01-01T00:00:00z", "2030-01-01T00:00:00.Z", "2030-01-01T00:00:00+0100",
               "2030-01-01T00:00:00+01", "2030-02-30T00:00:00Z", "2030-01-01T24:00:00Z",
               "2030-01-01T00:00:60Z", "2030-01-01T00:00:00+24:00", "\uff12030-01-01T00:00:00Z",
               "2030-01-01T00:00:00Z ", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("text", NOT_RFC3339)
def test_other_iso_8601_forms_are_refused(text: str) -> None:
    """A time other readers of the protocol would refuse is refused here too."""
    with pytest.raises(InvalidInput):
        parse_time(text, "'expires_at'")


@pytest.mark.parametrize(("text", "utc"), [
    ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=UTC)),
    ("2030-01-01T05:30:00.5+05:30", datetime(2030, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ("2029-12-31T23:00:00.123456789-01:00", datetime(2030, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
])
def test_the_rfc_3339_form_is_read_in_utc(text: str, utc: datetime) -> None:
    """Every offset and fraction RFC 3339 allows gives the same instant in UTC."""
    assert utc == parse_time(text, "'expires_at'")


def test_a_time_without_an_offset_is_refused_in_a_message() -> None:
    """A stored time must say its zone: no offset is malformed."""
    with pytest.raises(InvalidInput):
        parse_time("2030-01-01T00:00:00", "'expires_at'")


@pytest.mark.parametrize(("text", "utc"), [
    ("2030-01-01", datetime(2030, 1, 1, tzinfo=UTC)),
    ("2030-01-01T10:00:00", datetime(2030, 1, 1, 10, tzinfo=UTC)),
])
def test_since_may_omit_the_offset_or_the_time(text: str, utc: datetime) -> None:
    """--since, typed by a user, takes a bare date or a time without offset as UTC."""
    assert utc == parse_time(text, "--since", assume_utc=True)


def test_since_is_strict_about_everything_else() -> None:
    """--since's leniency is only the offset: a space for T is still refused."""
    with pytest.raises(InvalidInput):
        parse_time("2030-01-01 10:00:00", "--since", assume_utc=True)


def test_an_expiry_of_another_iso_form_is_refused_by_send() -> None:
    """A sender cannot store an expiry that readers would quarantine."""
    with pytest.raises(InvalidInput):
        parse_expiry("2030-01-01T00:00Z")


@given(st.integers(min_value=0, max_value=253402300799 * 10**9))
def test_every_time_the_library_writes_is_read_back(ns: int) -> None:
    """What the writer stamps (iso) the one parser reads, to the microsecond."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert epoch + timedelta(microseconds=ns // 1000) == parse_time(iso(ns), "'ts'")
