"""The three kinds of agent of the word-count job; each process is a fresh instance.

::

    python -m examples.restarting_agents.agents ROLE NAME ROOT [--pace S] [--exit-when-idle]

ROLE is ``splitter``, ``counter`` or ``merger``. The job: the splitter cuts
``corpus.txt`` (workspace) into chunks and sends one count task per chunk to
``counter-1`` or ``counter-2``; each counter counts the words of its chunk and sends
the partial counts to the merger; the merger adds them into ``result.json``
(workspace) and, when every chunk is in, marks the job thread done.

Every instance lives the same life (:meth:`Instance.run`):

1. ``boot()``: a new instance epoch and the brief, in priority order.
2. Crash recovery first: working state is checked against the source of truth it
   notes (the merger's ``result.json``), then each message a previous instance
   claimed and never finished is redone, or just marked done if its thread is done.
3. Then new mail, one small step at a time, progress kept in working state and
   the workspace, a heartbeat with spare capacity after each step.
4. A handoff every few steps and before a clean exit (SIGTERM, or the job's DONE
   marker). A SIGKILL writes nothing: the next boot finds the claims in ``cur/``.

Nothing is ever done twice in effect: every send carries an idempotency key, and the
merger's chunk set and totals live together in one workspace file written with
compare-and-swap, so a chunk already in it is never added again.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

import orjson

from agentmailbox import Mailbox, Message, NotFound, StaleVersion, State
from agentmailbox.presence import Presence

from .corpus import chunk_lines, count_words

__all__ = ["Counter", "Instance", "Merger", "Splitter", "main"]

RESULT = "result.json"
COUNTERS = ("counter-1", "counter-2")
MERGER = "merger"
BACKLOG = 4          # unread tasks at which a counter reports no spare capacity
HANDOFF_EVERY = 5    # steps between two periodic handoffs
IDLE_SLEEP = 0.02    # seconds an instance waits when there is nothing to do
BEAT_EVERY = 0.1     # seconds between two heartbeats


class Instance:
    """One instance of one agent: boot, recover, work in small steps, hand off."""

    work = 1.0  # this role's share of ``pace``: seconds of simulated work per step

    def __init__(self, mb: Mailbox, name: str, *, pace: float = 0.1,
                 exit_when_idle: bool = False) -> None:
        self.mb = mb
        self.agent = mb.agent(name)
        self.name = name
        self.pace = pace * self.work
        self.exit_when_idle = exit_when_idle
        self.presence = Presence(mb.root)
        self.job: str | None = None
        self.stopping = False
        self.steps = 0
        self._last_beat = 0.0

    # -- the life of an instance ---------------------------------------------------------

    def run(self) -> int:
        """Boot, recover, work until the job is done (or SIGTERM), hand off; exit code."""
        brief = self.agent.boot()
        self.say(brief.to_text().rstrip())
        self.job = self.agent.state.get("job")
        self.reconcile()
        self.recover(brief.to_dict())
        self.resume()
        while not self.stopping and not self.job_done():
            if self.step():
                self.after_step()
            elif self.exit_when_idle and self.idle():
                break
            else:
                time.sleep(IDLE_SLEEP)
            self.beat()
        self.write_handoff(final=True)
        self.say("clean exit: " + ("job thread is done" if self.job_done() else "stopped"))
        return 0

    def recover(self, brief: dict[str, Any]) -> None:
        """Crash recovery first: every claim a previous instance left unfinished.

        The brief lists them (within its budget); anything it left out is still in
        ``cur/``, so the claimed folder is swept too.
        """
        listed = [item["unfinished"]["id"] for item in brief["recovery"]["items"]
                  if "unfinished" in item]
        left_out = [i for i in self.agent.inbox.ids(State.CLAIMED) if i not in listed]
        for msg_id in listed + left_out:
            self.recover_one(self.agent.inbox.get(msg_id))

    def recover_one(self, msg: Message) -> None:
        """Finish one unfinished claim: skip it if its thread is done, else redo it."""
        if self.mb.threads.done(msg.thread) is not None:
            self.agent.inbox.done(msg)
            self.note(f"{msg.subject}: thread already done, marked done without redoing",
                      "recovery")
            return
        self.note(f"{msg.subject}: left unfinished by a previous instance, redoing", "recovery")
        self.redo(msg)

    def after_step(self) -> None:
        self.steps += 1
        if self.steps % HANDOFF_EVERY == 0:
            self.write_handoff()

    def job_done(self) -> bool:
        """The job's DONE marker: the thread marker, one ``stat`` while it is missing."""
        return self.job is not None and self.mb.threads.done(self.job) is not None

    def idle(self) -> bool:
        inbox = self.agent.inbox
        return inbox.count(State.NEW) == 0 and inbox.count(State.CLAIMED) == 0

    def learn_job(self, thread: str) -> None:
        """Note the job (its thread) in working state, once."""
        if self.job != thread:
            self.job = thread
            self.agent.state["job"] = thread

    def write_handoff(self, final: bool = False) -> None:
        """A checkpoint while working; the final handoff only at a clean stop."""
        self.agent.handoff(**self.handoff_note(), final=final)

    def beat(self, capacity: float | None = None) -> None:
        """A heartbeat, at most every BEAT_EVERY seconds."""
        now = time.monotonic()
        if now - self._last_beat >= BEAT_EVERY:
            self.presence.beat(self.name, capacity=capacity, epoch=self.agent.epoch)
            self._last_beat = now

    def request_stop(self, signum: int, frame: object) -> None:
        """SIGTERM: only set a flag; the loop finishes its step and hands off."""
        self.stopping = True

    def note(self, text: str, *tags: str) -> None:
        """Remember ``text`` in event memory and say it in the log."""
        self.agent.remember(text, tags=list(tags))
        self.say(text)

    def say(self, text: str) -> None:
        print(f"[{self.name} epoch {self.agent.epoch}] {text}", flush=True)

    # -- what each role fills in -----------------------------------------------------------

    def reconcile(self) -> None:
        """Before recovery: check what working state says against the source of truth."""

    def resume(self) -> None:
        """After recovery, before new mail: anything the role checks once per boot."""

    def step(self) -> bool:
        """One small unit of work: claim the oldest message and handle it.

        Returns False if there was nothing to do.
        """
        msg = self.agent.inbox.claim()
        if msg is None:
            return False
        self.handle(msg)
        return True

    def handle(self, msg: Message) -> None:
        raise NotImplementedError

    def redo(self, msg: Message) -> None:
        """Finish a claim a previous instance left unfinished: handle it again."""
        self.handle(msg)

    def handoff_note(self) -> dict[str, Any]:
        raise NotImplementedError


class Splitter(Instance):
    """Cuts the corpus into chunks and sends one count task per chunk.

    Working state: ``job`` and ``sent`` (how many tasks went out). ``sent`` is a
    hint for where to resume; the keys make resending any of them harmless.
    """

    work = 0.25

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_msg: Message | None = None
        self.corpus = ""
        self.chunks = 0
        self.sent = 0

    def redo(self, msg: Message) -> None:
        self.adopt(msg)

    def step(self) -> bool:
        if self.job_msg is None:
            msg = self.agent.inbox.claim()
            if msg is None:
                return False
            self.adopt(msg)
            return True
        if self.sent == self.chunks:
            self.finish_split()
            return True
        counter = COUNTERS[self.sent % len(COUNTERS)]
        if not self.has_capacity(counter):
            return False  # backpressure: the counter said it is full
        self.send_chunk(self.job_msg.thread, self.sent, counter)
        return True

    def adopt(self, msg: Message) -> None:
        """Take on a job message (new, or resumed from a previous instance's claim)."""
        self.job_msg = msg
        noted = self.agent.state.snapshot()
        self.sent = noted.get("sent", 0) if noted.get("job") == msg.thread else 0
        self.chunks = int(msg.body["chunks"])
        self.corpus = self.mb.workspace.get(msg.body["corpus"]).data.decode()
        self.job = msg.thread
        self.agent.state.update({"job": msg.thread, "sent": self.sent})
        self.say(f"job {msg.thread}: {self.chunks} chunks, resuming at chunk {self.sent}")

    def has_capacity(self, counter: str) -> bool:
        """Self-imposed rate limiting: hold back while the counter reports 0.0 capacity."""
        beat = self.presence.last(counter)
        return beat is None or beat.capacity is None or beat.capacity > 0.0

    def send_chunk(self, job: str, index: int, counter: str) -> None:
        """One count task, keyed by job and chunk; then note the progress."""
        body = {"job": job, "chunk": index, "chunks": self.chunks,
                "text": chunk_lines(self.corpus, self.chunks, index)}
        self.agent.send(counter, f"count chunk {index}", body, thread=job,
                        key=f"count:{job}:{index}")
        time.sleep(self.pace)
        self.sent = index + 1
        self.agent.state["sent"] = self.sent

    def finish_split(self) -> None:
        """All tasks are out: the job message is done (its DONE marker); wait for the merger."""
        if self.job_msg is not None:
            self.agent.inbox.done(self.job_msg)
        self.job_msg = None
        self.note(f"job {self.job}: all {self.chunks} count tasks sent", "split")
        self.write_handoff()

    def handoff_note(self) -> dict[str, Any]:
        decided = [f"chunk i goes to {COUNTERS[0]} if i is even, else {COUNTERS[1]}, with key "
                   "count:<job>:<i>: resending after a crash stores nothing twice",
                   "hold a chunk back while its counter reports no spare capacity"]
        if self.job_msg is not None:
            return {"in_progress": [f"job {self.job}: {self.sent}/{self.chunks} tasks sent"],
                    "decided": decided, "next": [f"send chunk {self.sent}"]}
        if self.job is None:
            return {"next": ["claim a job message"]}
        return {"decided": decided, "next": ["nothing until the job thread is done"],
                "waiting_on": [f"{MERGER}:{self.job}:the merged result"]}


class Counter(Instance):
    """Counts the words of one chunk per step and sends the partial counts on.

    Working state: ``job`` and ``current`` (the chunk being counted, or null).
    """

    def handle(self, msg: Message) -> None:
        """Count, send the partial (keyed), then mark the task done: its DONE marker."""
        task = msg.body
        self.learn_job(msg.thread)
        self.agent.state["current"] = task["chunk"]
        counts = count_words(task["text"])
        time.sleep(self.pace)
        self.agent.send(MERGER, f"partial {task['chunk']}",
                        {"job": task["job"], "chunk": task["chunk"], "chunks": task["chunks"],
                         "counts": counts},
                        thread=msg.thread, reply_to=msg.id,
                        key=f"partial:{task['job']}:{task['chunk']}")
        self.agent.inbox.done(msg)
        self.agent.state["current"] = None

    def beat(self, capacity: float | None = None) -> None:
        """Spare capacity falls as unread tasks pile up (backpressure for the splitter)."""
        unread = self.agent.inbox.count(State.NEW)
        super().beat(max(0.0, 1.0 - unread / BACKLOG))

    def handoff_note(self) -> dict[str, Any]:
        current = self.agent.state.get("current")
        return {"in_progress": [f"counting chunk {current}"] if current is not None else [],
                "decided": ["a partial carries key partial:<job>:<chunk>: a redone chunk is "
                            "stored once"],
                "next": [f"count the {self.agent.inbox.count(State.NEW)} unread task(s)"]}


class Merger(Instance):
    """Adds partial counts into ``result.json``, exactly once per chunk.

    ``result.json`` holds the merged chunk ids *and* the totals, written together with
    compare-and-swap: the single source of truth. Working state only notes which
    version this agent last wrote; at boot the workspace wins any disagreement.
    """

    work = 0.5

    def reconcile(self) -> None:
        """State drift defence: the workspace's version wins over working state's note of it.

        A kill between a merge and the state update leaves working state one
        version behind; nothing may be decided from that stale note.
        """
        _, version = self.load_result()
        noted = self.agent.state.get("result_version")
        if noted is not None and noted != version:
            self.note(f"working state said {RESULT} v{noted}, the workspace has v{version}: "
                      "trusting the workspace", "drift")
        self.agent.state["result_version"] = version

    def resume(self) -> None:
        """A job whose chunks are all merged gets its DONE marker now (a kill came first)."""
        result, version = self.load_result()
        if result is not None:
            self.learn_job(result["job"])
            self.complete_if_all_merged(result, version)

    def handle(self, msg: Message) -> None:
        """Merge one partial (or skip it if its chunk is in already), then mark it done."""
        partial = msg.body
        self.learn_job(msg.thread)
        merged = self.merge(partial)
        if merged is None:
            self.note(f"chunk {partial['chunk']} is already in {RESULT}: not merged again",
                      "skipped")
        time.sleep(self.pace)
        self.agent.inbox.done(msg)
        result, version = self.load_result()
        self.agent.state["result_version"] = version
        if result is not None:
            self.complete_if_all_merged(result, version)

    def merge(self, partial: dict[str, Any]) -> int | None:
        """Add one chunk's counts with compare-and-swap; None if it was merged before."""
        while True:
            result, version = self.load_result()
            if result is None:
                result = {"job": partial["job"], "chunks": partial["chunks"], "merged": [],
                          "counts": {}}
            if partial["chunk"] in result["merged"]:
                return None
            result["merged"] = sorted([*result["merged"], partial["chunk"]])
            for word, n in partial["counts"].items():
                result["counts"][word] = result["counts"].get(word, 0) + n
            data = orjson.dumps(result, option=orjson.OPT_SORT_KEYS)
            try:
                return self.mb.workspace.put(RESULT, data, if_version=version,
                                             author=self.name)
            except StaleVersion:
                continue  # someone wrote in between: read again, decide again

    def load_result(self) -> tuple[dict[str, Any] | None, int]:
        """``result.json`` and its version (None and 0 before the first merge)."""
        ws = self.mb.workspace
        version = ws.version(RESULT)
        if version == 0:
            return None, 0
        try:
            return orjson.loads(ws.get(RESULT, version).data), version
        except NotFound:
            return None, 0

    def complete_if_all_merged(self, result: dict[str, Any], version: int) -> None:
        """When every chunk is in: the job thread's DONE marker (created once, ever)."""
        if len(result["merged"]) < result["chunks"]:
            return
        _, created = self.agent.thread_done(result["job"],
                                            f"all {result['chunks']} chunks merged: "
                                            f"{RESULT} v{version}")
        if created:
            self.note(f"job {result['job']} done: {RESULT} v{version}", "done")

    def handoff_note(self) -> dict[str, Any]:
        result, version = self.load_result()
        merged = len(result["merged"]) if result else 0
        total = result["chunks"] if result else "?"
        return {"in_progress": [f"{merged}/{total} chunks merged into {RESULT} v{version}"],
                "decided": [f"{RESULT} (merged chunk ids + totals, compare-and-swap) is the "
                            "single source of truth: a chunk already in it is skipped"],
                "next": ["merge the unread partials; mark the job thread done when all are in"]}


ROLES: dict[str, type[Instance]] = {"splitter": Splitter, "counter": Counter, "merger": Merger}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("name", help="the agent's name in the mailbox")
    parser.add_argument("root", help="the mailbox root")
    parser.add_argument("--pace", type=float, default=0.1,
                        help="seconds of simulated work per counted chunk (default 0.1)")
    parser.add_argument("--exit-when-idle", action="store_true",
                        help="hand off and exit when no mail is left (for tests)")
    args = parser.parse_args(argv)
    with Mailbox.open(args.root) as mb:
        instance = ROLES[args.role](mb, args.name, pace=args.pace,
                                    exit_when_idle=args.exit_when_idle)
        signal.signal(signal.SIGTERM, instance.request_stop)
        return instance.run()


if __name__ == "__main__":
    sys.exit(main())
