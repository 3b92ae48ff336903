"""Property tests for the security boundary (names) and for the clock that names messages."""

from __future__ import annotations

import itertools
import string
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import agentmailbox
from agentmailbox import Clock, InvalidName, names
from agentmailbox.errors import InvalidInput
from agentmailbox.fs import hidden_name, staging_name
from agentmailbox.message import MAX_FUTURE_NS, stamp_of
from agentmailbox.names import check_agent, check_id, check_workspace_path, is_message_file

# The documented rules, written out independently of the implementation's regexes.
AGENT_CHARS = frozenset(string.ascii_lowercase + string.digits + "_-")
RESERVED = frozenset({"all", "everyone"})
WS_CHARS = frozenset(string.ascii_letters + string.digits + "_.@+=-")
WS_FIRST = frozenset(string.ascii_letters + string.digits + "_")
ID_WIDTH = 37  # 20-digit stamp, '-', 16 hex digits
HOSTILE = "/.\\\x00\n\t\r\x1b \x7f:*?@#+~AZé\u2215\u0131\ufeff"


def documented_agent_name(name: str) -> bool:
    """1-64 of a-z 0-9 _ -, starting with a letter or digit, and not reserved."""
    return (1 <= len(name) <= 64 and set(name) <= AGENT_CHARS and name[0] not in "_-"
            and name not in RESERVED)


def documented_workspace_path(path: str) -> bool:
    """1-8 parts split on '/', each 1-128 of letters, digits, _.@+=- not starting with . or -."""
    parts = path.split("/")
    return 1 <= len(parts) <= 8 and all(
        1 <= len(p) <= 128 and set(p) <= WS_CHARS and p[0] in WS_FIRST for p in parts)


def _accepts(check: object, value: str) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except InvalidInput:
        return False
    return True


agent_like = st.text(alphabet=st.sampled_from(sorted(AGENT_CHARS) + list(HOSTILE)), max_size=70)
valid_agents = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)


@given(st.one_of(agent_like, valid_agents, st.text(max_size=80)))
@example("all")
@example("x" * 64)
@example("x" * 65)
@example("bob\n")
@example("\u0131")  # dotless i: lower case, but not ASCII
def test_check_agent_accepts_exactly_the_documented_names(name: str) -> None:
    """check_agent accepts a name if and only if it follows the documented rules."""
    assert documented_agent_name(name) == _accepts(check_agent, name)


@given(st.one_of(agent_like, valid_agents, st.text(max_size=80)))
def test_accepted_agent_name_is_safe_as_a_path_part(name: str) -> None:
    """An accepted name never holds '/', '..', NUL or upper case, and comes back unchanged."""
    if _accepts(check_agent, name):
        assert (name, False) == (check_agent(name), any(
            bad in name for bad in ("/", "..", "\x00")) or name != name.lower())


@given(valid_agents.map(str.upper).filter(lambda n: n != n.lower()))
def test_upper_case_agent_name_hint_names_the_lower_case_spelling(name: str) -> None:
    """A name refused only for its case gets a hint with the lower-case spelling."""
    with pytest.raises(InvalidName) as caught:
        check_agent(name)
    assert f"use {name.lower()!r}" in caught.value.hint


ws_part = st.text(alphabet=st.sampled_from(sorted(WS_CHARS)), min_size=1, max_size=20).filter(
    lambda p: p[0] in WS_FIRST)
bad_part = st.sampled_from(["..", ".", "", ".git", ".hidden", "-x", "a b", "a\x00b", "a\\b"])


@given(st.lists(ws_part, min_size=1, max_size=8))
def test_valid_workspace_path_splits_into_its_parts(parts: list[str]) -> None:
    """A relative path of valid parts is accepted and split at '/'."""
    assert tuple(parts) == check_workspace_path("/".join(parts))


@given(st.lists(ws_part, max_size=4), bad_part, st.lists(ws_part, max_size=3))
def test_workspace_path_with_a_bad_part_is_refused(before: list[str], bad: str,
                                                   after: list[str]) -> None:
    """'..', '.', empty parts, leading dots and other bad parts are refused anywhere in a path."""
    assert not _accepts(check_workspace_path, "/".join([*before, bad, *after]))


@given(st.lists(ws_part, min_size=1, max_size=4))
def test_absolute_workspace_path_is_refused(parts: list[str]) -> None:
    """A path starting with '/' (or ending with one) is refused."""
    path = "/".join(parts)
    assert (False, False) == (_accepts(check_workspace_path, "/" + path),
                              _accepts(check_workspace_path, path + "/"))


@given(st.one_of(st.text(alphabet=st.sampled_from(sorted(WS_CHARS) + list("/\x00 \\")),
                         max_size=60), st.text(max_size=60)))
def test_check_workspace_path_accepts_exactly_the_documented_paths(path: str) -> None:
    """check_workspace_path accepts a path if and only if it follows the documented rules."""
    assert documented_workspace_path(path) == _accepts(check_workspace_path, path)


def test_workspace_path_deeper_than_eight_levels_is_refused() -> None:
    """Nine levels are one too many."""
    assert (True, False) == (_accepts(check_workspace_path, "/".join("a" * 8)),
                             _accepts(check_workspace_path, "/".join("a" * 9)))


# -- the clock and its ids ------------------------------------------------------------------------

walls = st.lists(st.integers(min_value=0, max_value=10**19), min_size=1, max_size=200)


def _fake_wall(readings: list[int]) -> object:
    it = iter(readings)
    return lambda: next(it)


@given(walls)
def test_stamps_strictly_increase_whatever_the_wall_clock_does(readings: list[int]) -> None:
    """Even when the wall clock steps back or stands still, each stamp beats the last."""
    clock = Clock(wall=_fake_wall(readings))
    stamps = [clock.stamp() for _ in readings]
    assert [] == [(a, b) for a, b in itertools.pairwise(stamps) if b <= a]


@given(walls)
def test_stamp_never_lags_the_wall_clock(readings: list[int]) -> None:
    """A stamp is at least the wall-clock reading it was made at."""
    clock = Clock(wall=_fake_wall(readings))
    assert [] == [(r, s) for r in readings if (s := clock.stamp()) < r]


@given(walls)
def test_ids_are_fixed_width_and_sort_in_the_order_made(readings: list[int]) -> None:
    """Ids are 37 ASCII characters of the documented shape; string order is stamp order."""
    clock = Clock(wall=_fake_wall(readings))
    ids = [clock.new_id() for _ in readings]
    assert ({ID_WIDTH}, ids, []) == ({len(i) for i in ids}, sorted(ids),
                                     [i for i in ids if not _accepts(check_id, i)])
    assert [stamp_of(i) for i in ids] == sorted(stamp_of(i) for i in ids)


def test_ids_from_the_real_clock_are_unique_and_sorted() -> None:
    """Many ids made in a tight loop are all different and already in order."""
    clock = Clock()
    ids = [clock.new_id() for _ in range(20_000)]
    assert (len(ids), ids) == (len(set(ids)), sorted(ids))


@given(walls, st.integers(min_value=0, max_value=10**19))
def test_observed_stamp_pushes_later_stamps_past_it(readings: list[int], seen: int) -> None:
    """After observing someone's stamp (not too far ahead), the next stamp is larger."""
    wall = max(readings)
    clock = Clock(wall=lambda: wall)
    clock.observe(seen)
    stamp = clock.stamp()
    assert stamp > seen if seen <= wall + MAX_FUTURE_NS else stamp == max(wall, 1)


@given(st.text(max_size=60))
@example("01795443442123456789-9f86d081884c7d65.json")
@example("01795443442123456789-9f86d081884c7d65.json\n")
@example("01795443442123456789-9F86D081884C7D65.json")
def test_message_file_names_are_exactly_id_dot_json(name: str) -> None:
    """Only <20 digits>-<16 lower hex>.json is a message file name."""
    expected = (len(name) == 42 and set(name[:20]) <= set(string.digits) and name[20] == "-"
                and set(name[21:37]) <= set("0123456789abcdef") and name[37:] == ".json")
    assert expected == is_message_file(name)


# The character classes every name, id and address pattern is made of: only names.py
# may spell them.
_PATTERN_PIECES = ("a-z0-9", "0-9a-f", "A-Za-z0-9", "[0-9]{", "[@#+]")


def test_name_patterns_are_declared_only_in_names() -> None:
    """Every name, id and address pattern is declared once, in names.py (the security
    boundary), so no module can accept a name that names.py would refuse."""
    package = Path(agentmailbox.__file__).parent
    found = {}
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        pieces = {p for p in _PATTERN_PIECES if p in text}
        if pieces and path.name != "names.py":
            found[str(path.relative_to(package))] = pieces
    assert {} == found


def test_staging_names_made_by_fs_have_the_shapes_readers_know() -> None:
    """A file fs stages is recognised as staging by doctor and the inbox (one shape each)."""
    msg_id = Clock().new_id()
    assert names.staging_id(staging_name(msg_id)) == msg_id
    assert names.is_hidden_staging(hidden_name())
    assert names.staging_id(msg_id + ".json") is None
    assert not names.is_hidden_staging(msg_id + ".json")
