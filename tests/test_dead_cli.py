"""``mailbox dead ls | show | retry | purge``: inspect, put back, and finally delete dead mail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import python_env

from agentmailbox import Mailbox, State
from agentmailbox.dead import purge_dead_letters
from agentmailbox.supervisor import Supervisor


def route(mb: Mailbox) -> None:
    with Supervisor(mb, backoff=(0, 0)) as sup:
        sup.run_once()


def bury_unroutable(mb: Mailbox) -> tuple[str, str]:
    """Send to a role nobody has and route it: (message id, dead id)."""
    msg = mb.send("alice", "@tester", subject="run the suite", body="all of it")
    route(mb)
    [letter] = mb.dead.list()
    return msg.id, letter.id


def bury_from_inbox(mb: Mailbox) -> tuple[str, str]:
    """Quarantine one of bob's unread messages by hand: (message id, dead id)."""
    msg = mb.send("alice", "bob", subject="lost")
    dead_id = mb.dead.bury(mb.inbox("bob").new / f"{msg.id}.json", "test quarantine",
                           agent="bob")
    assert dead_id is not None
    return msg.id, dead_id


def test_dead_ls_lists_each_letter_with_its_reason(cli: Any, mb: Mailbox) -> None:
    """ls shows every dead letter, oldest first, with why it is there."""
    _, dead_id = bury_unroutable(mb)
    text = cli("dead", "ls")
    assert text.code == 0 and dead_id in text.out and "no agent has role 'tester'" in text.out
    rows = cli("dead", "ls", "--json").json()
    assert [(r["id"], r["origin"]) for r in rows] == [(dead_id, "spool/cur")]


def test_dead_ls_names_the_message_each_letter_was(cli: Any, mb: Mailbox) -> None:
    """ls shows, under each letter, the id, sender and subject of the message it was, and
    show takes that message id as well as the dead-letter id."""
    msg_id, dead_id = bury_from_inbox(mb)
    text = cli("dead", "ls").out
    assert f"message {msg_id} from alice: lost" in text
    assert cli("dead", "show", msg_id, "--json").json()["id"] == dead_id


def test_status_of_dead_mail_says_where_why_and_since_when(cli: Any, mb: Mailbox) -> None:
    """status of a quarantined message answers (exit 0) with its dead letter and reason,
    instead of 'not found'."""
    msg_id, dead_id = bury_from_inbox(mb)
    result = cli("status", msg_id)
    assert result.code == 0
    assert f"in dead/ as {dead_id} (from agents/bob/inbox/new): test quarantine" in result.out


def test_dead_ls_of_an_empty_dead_folder_says_so(cli: Any) -> None:
    """ls with nothing dead prints a friendly line and succeeds."""
    result = cli("dead", "ls")
    assert (result.code, result.out.strip()) == (0, "no dead letters")


def test_dead_show_prints_reason_and_content(cli: Any, mb: Mailbox) -> None:
    """show gives the reason and the message as stored."""
    msg_id, dead_id = bury_unroutable(mb)
    shown = cli("dead", "show", dead_id, "--json").json()
    assert shown["reason"] == "undeliverable: no agent has role 'tester'"
    assert f'"id":"{msg_id}"' in shown["content"] and "all of it" in shown["content"]


def test_dead_show_names_a_symlink_without_following_it(cli: Any, mb: Mailbox,
                                                        tmp_path: Any) -> None:
    """A quarantined symlink is shown as such; its target is never read."""
    secret = tmp_path / "secret.txt"
    secret.write_text("do not print me")
    link = mb.inbox("bob").new / "01000000000000000000-0123456789abcdef.json"
    os.symlink(secret, link)
    dead_id = mb.dead.bury(link, "symbolic link (never followed)", agent="bob")
    result = cli("dead", "show", str(dead_id))
    assert result.code == 0 and "symbolic link" in result.out
    assert "do not print me" not in result.out


def test_dead_show_of_an_unknown_id_exits_4(cli: Any) -> None:
    """show of an id that is not in dead/ is 'not found'."""
    assert cli("dead", "show", "01000000000000000000-0123456789abcdef").code == 4


def test_dead_retry_of_routed_mail_goes_back_through_the_spool(cli: Any, mb: Mailbox) -> None:
    """Once someone has the role, retry re-routes the same id and the dead letter is gone."""
    msg_id, dead_id = bury_unroutable(mb)
    mb.add_agent("tess", role="tester")
    result = cli("dead", "retry", dead_id, "--json")
    assert result.code == 0 and result.json() == {"dead_id": dead_id, "id": msg_id,
                                                  "to": "spool", "stored": True}
    route(mb)
    assert mb.inbox("tess").ids() == [msg_id]
    assert mb.dead.list() == []


def test_dead_retry_of_inbox_mail_returns_it_to_that_inbox(cli: Any, mb: Mailbox) -> None:
    """Mail quarantined from bob's inbox goes back to bob's new/ with the same id."""
    msg_id, dead_id = bury_from_inbox(mb)
    assert cli("dead", "retry", dead_id).code == 0
    assert mb.inbox("bob").state_of(msg_id) is State.NEW
    assert mb.dead.list() == []


def test_dead_retry_of_mail_the_inbox_still_holds_keeps_the_letter(cli: Any, mb: Mailbox) -> None:
    """Retrying a copy of mail the inbox already holds stores nothing and says so."""
    msg_id, dead_id = bury_from_inbox(mb)
    cli("dead", "retry", dead_id)
    again = mb.dead.bury(_copy_into_tmp(mb, msg_id), "duplicate", agent="bob")
    result = cli("dead", "retry", str(again), "--json")
    assert result.code == 0 and result.json()["stored"] is False
    assert [d.id for d in mb.dead.list()] == [again]


def _copy_into_tmp(mb: Mailbox, msg_id: str) -> Any:
    inbox = mb.inbox("bob")
    copy = inbox.tmp / f"{msg_id}.json"
    copy.write_bytes((inbox.new / f"{msg_id}.json").read_bytes())
    return copy


def test_dead_retry_refuses_content_that_is_not_a_message(cli: Any, mb: Mailbox) -> None:
    """A dead letter that does not parse cannot be retried: exit 5 and a clear reason."""
    bad = mb.inbox("bob").new / "01000000000000000000-0123456789abcdef.json"
    bad.write_bytes(b'{"v": 1, "id": "truncated')
    dead_id = mb.dead.bury(bad, "invalid JSON", agent="bob")
    result = cli("dead", "retry", str(dead_id))
    assert result.code == 5
    assert "not a valid message" in result.err
    assert [d.id for d in mb.dead.list()] == [dead_id]


def test_dead_purge_without_yes_refuses_and_deletes_nothing(cli: Any, mb: Mailbox) -> None:
    """purge asks first; without a terminal and without --yes it refuses."""
    bury_unroutable(mb)
    result = cli("dead", "purge", stdin="")
    assert result.code == 5 and "--yes" in result.err
    assert len(mb.dead.list()) == 1


def test_dead_purge_yes_deletes_every_dead_letter(cli: Any, mb: Mailbox) -> None:
    """purge --yes removes the letters and their reason files."""
    bury_unroutable(mb)
    bury_from_inbox(mb)
    result = cli("dead", "purge", "--yes", "--json")
    assert result.code == 0 and len(result.json()["purged"]) == 2
    assert mb.dead.list() == [] and os.listdir(mb.dead.directory) == []


def test_dead_purge_older_than_keeps_recent_letters(cli: Any, mb: Mailbox) -> None:
    """--older-than DAYS only deletes letters buried before that."""
    bury_unroutable(mb)
    assert cli("dead", "purge", "--older-than", "1", "--yes").code == 0
    assert len(mb.dead.list()) == 1


def test_purge_older_than_removes_letters_past_the_cutoff(mb: Mailbox) -> None:
    """Letters buried more than N days before 'now' are the ones removed."""
    _, dead_id = bury_unroutable(mb)
    later = int(dead_id[:20]) + 2 * 86400 * 10**9
    assert purge_dead_letters(mb, older_than_days=1, now_ns=later) == [dead_id]


@pytest.mark.parametrize("command", [("dead", "retry"), ("dead", "show")])
def test_dead_commands_reject_a_malformed_id(cli: Any, command: tuple[str, str]) -> None:
    """An id with a path in it is refused before any file is touched."""
    assert cli(*command, "../../mailbox.json").code in (4, 5)


def test_purge_racing_a_retry_reports_only_what_it_removed(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A letter that a retry puts back while purge is running is not reported as purged."""
    from agentmailbox.dead import retry_dead_letter

    msg_id, retried = bury_from_inbox(mb)
    _, kept = bury_from_inbox(mb)
    listed = mb.dead.list

    def list_then_retry(**options: bool) -> list:
        letters = listed(**options)
        retry_dead_letter(mb, retried)  # another process, between purge's list and removal
        return letters

    monkeypatch.setattr(mb.dead, "list", list_then_retry)
    assert ([kept], State.NEW) == (purge_dead_letters(mb), mb.inbox("bob").state_of(msg_id))


def test_of_two_removers_of_one_dead_letter_exactly_one_removes_it(mb: Mailbox) -> None:
    """Removing a dead letter says whether this call removed it: the first True, then False."""
    _, dead_id = bury_from_inbox(mb)
    assert ([True, False], []) == ([mb.dead.remove(dead_id), mb.dead.remove(dead_id)],
                                   os.listdir(mb.dead.directory))


PURGE = """
import os, sys, time, orjson
from agentmailbox import Mailbox
from agentmailbox.dead import purge_dead_letters
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
with Mailbox.open(sys.argv[1]) as mb:
    print(orjson.dumps(purge_dead_letters(mb)).decode())
"""


def test_two_purges_at_once_report_each_letter_exactly_once(mb: Mailbox, tmp_path: Path) -> None:
    """Two purges run together report every dead letter once between them, none twice."""
    letters = {bury_from_inbox(mb)[1] for _ in range(60)}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", PURGE, str(mb.path), str(go)],
                              env=python_env(), stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    go.touch()
    reports = [orjson.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert (letters, len(letters)) == (set(reports[0]) | set(reports[1]),
                                       len(reports[0]) + len(reports[1]))
