"""One rule for every JSON document the library reads: one object, no repeated key."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agentmailbox import InvalidInput, Mailbox
from agentmailbox.fs import parse_object


@pytest.mark.parametrize("text", [b'{"a": 1, "a": 2}', b'{"a":1,"a":1}\n',
                                  b'{"x": {"b": [1, {"c": 1, "c": 2}]}}'])
def test_a_repeated_key_anywhere_is_refused(text: bytes) -> None:
    """A document that means one thing to one parser and another to the next is refused."""
    with pytest.raises(ValueError, match="duplicate keys"):
        parse_object(text)


@pytest.mark.parametrize("option", [0, orjson.OPT_INDENT_2, orjson.OPT_APPEND_NEWLINE,
                                    orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE])
def test_what_the_library_writes_is_read_back(option: int) -> None:
    """Compact and indented documents as the library writes them read back unchanged."""
    obj = {"a": 1, "b": {"c": [1, 2, {"d": "é"}]}, "e": None}
    assert obj == parse_object(orjson.dumps(obj, option=option))


def test_mailbox_json_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    """A root whose mailbox.json repeats a key is not opened (exit 5), whichever key wins."""
    Mailbox.init(tmp_path, fsync="never").close()
    config = tmp_path / ".mailbox" / "mailbox.json"
    config.write_bytes(config.read_bytes().replace(b"{", b'{"fsync": "never",', 1))
    with pytest.raises(InvalidInput, match="duplicate keys"):
        Mailbox.open(tmp_path)


def test_a_state_file_with_a_repeated_key_is_an_error_not_a_guess(mb: Mailbox) -> None:
    """An agent's working state that repeats a key is refused, not read with the last value."""
    bob = mb.agent("bob")
    bob.state.set("plan", "a")
    path = mb.root.agent_dir("bob") / "state.json"
    path.write_bytes(b'{"plan": "a", "plan": "b"}\n')
    with pytest.raises(InvalidInput):
        bob.state.get("plan")
