"""Soak: producers, competing readers and the supervisor, SIGKILLed at random for N seconds.

Usage: scripts/soak [--seconds N] [--rate R] [--seed S] [--keep]

Every process is a separate interpreter, killed with SIGKILL at random moments and
started again at once (a new incarnation of the same role):

    producers   p1, p2 send to r1 (direct), to +team (routed: r2, r3) or both, each send
                with the key "<producer>:<seq>"; after send returns they append
                "<seq> <id> <to>" to their own log. A restarted producer resumes at the
                seq after the last one logged, with the same key, so a send in flight
                when it died completes under its first id.
    readers     two per agent (one using inbox.watch() when the library has it), claim,
                log "claim <id>", then mark done ("done <id>") or now and then release
                ("release <id>"); each incarnation has its own log.
    supervisor  `mailbox supervise`, routing +team.

Bad files are planted now and then in r1's new/ and in spool/new. At the end the killing
stops, producers finish, readers drain, everything stops, `doctor --repair` runs, and
every acknowledged message must be done exactly once in each of its recipients' inboxes:
none lost, none stored twice, none handled twice unless a reader was killed holding it
or released it, nothing stored that no producer acknowledged, and dead/ holding exactly
the planted files. Prints the counts (and a last line of JSON); exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agentmailbox import Clock, Inbox, Mailbox, doctor  # noqa: E402

PRODUCERS = ("p1", "p2")
READ_AGENTS = ("r1", "r2", "r3")
TEAM = ("r2", "r3")
READERS_PER_AGENT = 2
LEASE_SECONDS = 5.0          # a killed reader's claim returns to new/ after this
RELEASE_EVERY = 20           # a reader gives back about one message in this many
KILL_PAUSE = (0.2, 1.0)      # seconds between two kills
PLANT_EVERY = 4.0            # seconds between two planted bad files
DRAIN_TIMEOUT = 90.0         # seconds the readers get to drain after the killing stops
ADDRESSES = (["r1"], ["+team"], ["r1", "+team"])


# -- the roles, each run in its own interpreter ----------------------------------------------

def _append(fd: int, line: str) -> None:
    os.write(fd, line.encode())  # one write per line: a kill never leaves half a line


def _log_fd(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def _last_seq(log: Path) -> int:
    """The last seq a producer logged as acknowledged (-1 if none)."""
    seqs = [int(line.split()[0]) for line in _lines(log) if len(line.split()) == 3]
    return max(seqs, default=-1)


def produce(root: str, name: str, log: str, stop: str, rate: str) -> None:
    """Send keyed messages until ``stop`` exists, logging each acknowledged id.

    The first send of an incarnation happens even if ``stop`` exists: the one before it
    may have been killed after its send stored the message and before the log line, and
    only this resend (same key, same id) acknowledges it."""
    pause = 1.0 / float(rate)
    seq = _last_seq(Path(log)) + 1
    fd = _log_fd(log)
    first = True
    with Mailbox.open(root) as mb:
        while first or not os.path.exists(stop):
            first = False
            to = ADDRESSES[seq % len(ADDRESSES)]
            msg = mb.send(name, to, subject=f"{name} {seq}", key=f"{name}:{seq}",
                          body={"producer": name, "seq": seq})
            _append(fd, f"{seq} {msg.id} {'+'.join(to)}\n")
            seq += 1
            time.sleep(pause)


def _handle(inbox: Inbox, msg_id: str, fd: int, rng: random.Random) -> None:
    """One message: log the claim, then give it back now and then, else mark it done."""
    _append(fd, f"claim {msg_id}\n")
    if rng.randrange(RELEASE_EVERY) == 0:
        inbox.release(msg_id)
        _append(fd, f"release {msg_id}\n")
    elif inbox.done(msg_id):
        _append(fd, f"done {msg_id}\n")
    else:
        _append(fd, f"late {msg_id}\n")  # someone else finished it: a second hand-out


def read(root: str, agent: str, log: str, stop: str, mode: str) -> None:
    """Claim (polling, or through inbox.watch()) until ``stop`` exists and nothing is left."""
    rng = random.Random(os.getpid())
    fd = _log_fd(log)
    with Mailbox.open(root) as mb:
        inbox = mb.inbox(agent)
        if mode == "watch":
            _read_watching(inbox, fd, stop, rng)
            return
        while True:
            finished = os.path.exists(stop)
            msg = inbox.claim()
            if msg is None:
                if finished:
                    return
                time.sleep(0.005)
                continue
            _handle(inbox, msg.id, fd, rng)


def _read_watching(inbox: Inbox, fd: int, stop: str, rng: random.Random) -> None:
    stopping = threading.Event()

    def watch_stop_file() -> None:
        while not os.path.exists(stop):
            time.sleep(0.05)
        stopping.set()

    threading.Thread(target=watch_stop_file, daemon=True).start()
    for msg in inbox.watch(stop=stopping):
        _handle(inbox, msg.id, fd, rng)


ROLES = {"produce": produce, "read": read}


# -- the processes the soak runs ------------------------------------------------------------------

@dataclass
class Slot:
    """One process the soak keeps running: its role, command and current incarnation."""

    role: str                 # producer, reader or supervisor
    name: str
    argv: list[str]
    stdio: Path
    proc: subprocess.Popen[bytes] | None = None
    incarnation: int = 0
    logs: list[Path] = field(default_factory=list)   # reader logs, one per incarnation
    killed_logs: list[Path] = field(default_factory=list)

    def start(self, env: dict[str, str]) -> None:
        self.incarnation += 1
        argv = [a.replace("{n}", str(self.incarnation)) for a in self.argv]
        if self.role == "reader":
            self.logs.append(Path(argv[argv.index("read") + 3]))
        with open(self.stdio, "ab") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out,
                                         start_new_session=True)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if self.role == "reader":
            self.killed_logs.append(self.logs[-1])


@dataclass
class Soak:
    """One soak run: its folders, its processes and what happened to them."""

    work: Path
    seconds: float
    rate: float
    rng: random.Random
    slots: list[Slot] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    planted: list[str] = field(default_factory=list)
    watching: int = 0

    @property
    def root(self) -> Path:
        return self.work / ".mailbox"

    def stop_file(self, role: str) -> Path:
        return self.work / f"stop-{role}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("AGENTMAILBOX_FAULT", None)
        return env


def _setup(soak: Soak) -> None:
    mb = Mailbox.init(soak.work, fsync="never", lease_seconds=LEASE_SECONDS,
                      groups={"team": list(TEAM)})
    for name in (*PRODUCERS, *READ_AGENTS):
        mb.add_agent(name)
    mb.close()
    (soak.work / "logs").mkdir()
    me = [sys.executable, str(Path(__file__).resolve())]
    logs = soak.work / "logs"
    for name in PRODUCERS:
        soak.slots.append(Slot("producer", name, [*me, "--role", "produce", str(soak.root), name,
                                                  str(logs / f"{name}.acks"),
                                                  str(soak.stop_file("producer")),
                                                  str(soak.rate)], logs / f"{name}.out"))
    can_watch = hasattr(Inbox, "watch")
    for agent in READ_AGENTS:
        for i in range(READERS_PER_AGENT):
            mode = "watch" if can_watch and i == 0 else "claim"
            soak.watching += mode == "watch"
            name = f"{agent}-{i}"
            soak.slots.append(Slot("reader", name, [*me, "--role", "read", str(soak.root), agent,
                                                    str(logs / f"{name}.{{n}}.log"),
                                                    str(soak.stop_file("reader")), mode],
                                   logs / f"{name}.out"))
    soak.slots.append(Slot("supervisor", "supervisor",
                           [sys.executable, "-m", "agentmailbox", "--root", str(soak.root),
                            "supervise", "--log-level", "warning"], logs / "supervisor.out"))


def _check_alive(soak: Soak) -> None:
    """A process that ended on its own crashed (nothing asks them to stop yet): restart it."""
    for slot in soak.slots:
        assert slot.proc is not None
        code = slot.proc.poll()
        if code is not None:
            soak.crashes.append(f"{slot.name} (incarnation {slot.incarnation}) exited {code}")
            slot.start(soak.env())


def _plant(soak: Soak, clock: Clock) -> None:
    """A truncated message file, alternately in r1's new/ and in spool/new."""
    name = f"{clock.new_id()}.json"
    folder = (soak.root / "agents" / "r1" / "inbox" / "new" if len(soak.planted) % 2 == 0
              else soak.root / "spool" / "new")
    (folder / name).write_bytes(b'{"v":1,"id":"' + name[:-5].encode())
    soak.planted.append(name)


def _run_with_kills(soak: Soak) -> None:
    env = soak.env()
    for slot in soak.slots:
        slot.start(env)
    clock = Clock()
    deadline = time.monotonic() + soak.seconds
    next_plant = time.monotonic() + PLANT_EVERY
    while time.monotonic() < deadline:
        time.sleep(min(soak.rng.uniform(*KILL_PAUSE), max(deadline - time.monotonic(), 0)))
        _check_alive(soak)
        role = soak.rng.choice(["producer", "reader", "supervisor"])
        victim = soak.rng.choice([s for s in soak.slots if s.role == role])
        victim.kill()
        soak.kills[role] += 1
        victim.start(env)
        if time.monotonic() >= next_plant:
            _plant(soak, clock)
            next_plant += PLANT_EVERY


def _wait(slots: list[Slot], timeout: float) -> None:
    for slot in slots:
        assert slot.proc is not None
        try:
            slot.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            slot.proc.kill()
            slot.proc.wait()


def _drained(root: Path) -> bool:
    folders = [root / "spool" / f for f in ("new", "cur", "deferred", "held")]
    folders += [root / "agents" / a / "inbox" / f for a in READ_AGENTS for f in ("new", "cur")]
    return not any(any(os.scandir(f)) for f in folders if f.is_dir())


def _finish(soak: Soak) -> bool:
    """Stop producers, let the readers and the supervisor drain, stop everything.
    True if everything drained in time."""
    _check_alive(soak)
    soak.stop_file("producer").touch()
    _wait([s for s in soak.slots if s.role == "producer"], timeout=60)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while not _drained(soak.root) and time.monotonic() < deadline:
        time.sleep(0.1)
    drained = _drained(soak.root)
    soak.stop_file("reader").touch()
    for slot in soak.slots:
        if slot.role == "supervisor" and slot.proc is not None:
            slot.proc.send_signal(signal.SIGTERM)
    _wait([s for s in soak.slots if s.role != "producer"], timeout=60)
    return drained


# -- the accounting -------------------------------------------------------------------------------

def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


@dataclass
class Tally:
    """What the logs and the folders say, and every violation found."""

    acked: dict[str, tuple[str, ...]] = field(default_factory=dict)  # id -> recipients
    stored: dict[str, Counter[str]] = field(default_factory=dict)    # agent -> id -> copies
    undrained: int = 0
    done_on_disk: int = 0
    events: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    killed_holding: Counter[tuple[str, str]] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


def _recipients(to: str) -> tuple[str, ...]:
    return (("r1",) if "r1" in to.split("+") else ()) + (TEAM if "team" in to else ())


def _count_acks(soak: Soak, tally: Tally) -> None:
    for name in PRODUCERS:
        seen: dict[int, str] = {}
        for line in _lines(soak.work / "logs" / f"{name}.acks"):
            seq, msg_id, to = line.split()
            if seen.setdefault(int(seq), msg_id) != msg_id:
                tally.violations.append(f"{name} seq {seq} acknowledged as two ids")
            tally.acked[msg_id] = _recipients(to)


def _count_stored(soak: Soak, tally: Tally) -> None:
    for agent in READ_AGENTS:
        inbox = soak.root / "agents" / agent / "inbox"
        waiting = [*(inbox / "new").iterdir(), *(inbox / "cur").iterdir()]
        tally.undrained += len(waiting)
        finished = list((inbox / "done").glob("*/*.json"))
        tally.done_on_disk += len(finished)
        files = [*waiting, *finished]
        tally.stored[agent] = Counter(p.name[:-5] for p in files)


def _count_reads(soak: Soak, tally: Tally) -> None:
    agents = {s.name: s.name.split("-")[0] for s in soak.slots if s.role == "reader"}
    for slot in (s for s in soak.slots if s.role == "reader"):
        for log in slot.logs:
            lines = [words for line in _lines(log) if len(words := line.split()) == 2]
            for word, msg_id in lines:
                tally.events.setdefault((agents[slot.name], msg_id), Counter())[word] += 1
            if log in slot.killed_logs and lines and lines[-1][0] == "claim":
                tally.killed_holding[(agents[slot.name], lines[-1][1])] += 1


def _judge(soak: Soak, tally: Tally) -> dict[str, int]:
    expected = {(agent, i) for i, agents in tally.acked.items() for agent in agents}
    stored = {(a, i): n for a, ids in tally.stored.items() for i, n in ids.items()}
    lost = [k for k in expected if stored.get(k, 0) == 0]
    twice = [k for k, n in stored.items() if n > 1]
    unacked = [k for k in stored if k not in expected]
    handled_twice = [k for k, ev in tally.events.items()
                     if ev["done"] > 1 or ev["late"] > 0 or
                     ev["claim"] - 1 - ev["release"] - tally.killed_holding[k] > 0]
    dead = sorted(p.name[:-12] for p in (soak.root / "dead").glob("*.reason.json"))
    dead_names = sorted(orjson.loads((soak.root / "dead" / f"{d}.reason.json").read_bytes())
                        ["name"] for d in dead)
    for what, found in (("lost", lost), ("stored twice", twice), ("stored, never acknowledged",
                        unacked), ("handled twice", handled_twice)):
        if found:
            tally.violations.append(f"{len(found)} {what}, e.g. {sorted(found)[:3]}")
    if tally.undrained:
        tally.violations.append(f"{tally.undrained} messages still in new/ or cur/")
    if dead_names != sorted(soak.planted):
        tally.violations.append(f"dead/ holds {dead_names}, planted {sorted(soak.planted)}")
    tally.violations += [f"crashed: {c}" for c in soak.crashes]
    reclaimed = sum(ev["claim"] - 1 for ev in tally.events.values() if ev["claim"] > 1)
    return {"lost": len(lost), "duplicates": len(twice) + len(handled_twice),
            "unacknowledged": len(unacked), "dead": len(dead_names), "reclaimed": reclaimed}


def _routed(root: Path) -> int:
    ids = set()
    for day in (root / "journal").glob("*.jsonl"):
        for line in day.read_bytes().splitlines():
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("ev") == "route":
                ids.add(event.get("id"))
    return len(ids)


def _repair(soak: Soak, tally: Tally) -> Counter[str]:
    """doctor --repair (staging leftovers of killed producers are expected), then clean."""
    with Mailbox.open(soak.root) as mb:
        repaired = Counter(f.kind for f in doctor.check(mb, repair=True, stale_after=0))
        left = doctor.check(mb)
    unexpected = set(repaired) - {"stale-tmp", "orphan-reason"}  # killed mid-write
    if unexpected:
        tally.violations.append(f"doctor repaired {sorted(unexpected)}")
    if left:
        tally.violations.append(f"doctor still finds {[f.to_dict() for f in left]}")
    return repaired


def _report(soak: Soak, tally: Tally, counts: dict[str, int], repaired: Counter[str],
            elapsed: float) -> dict[str, object]:
    # The folder is the state: a reader killed between done() and its log line still
    # finished the message, so count what is in done/, not what the logs say.
    done = tally.done_on_disk
    summary: dict[str, object] = {
        "seconds": soak.seconds, "elapsed": round(elapsed, 1), "sent": len(tally.acked),
        "routed": _routed(soak.root),
        "delivered": sum(sum(c.values()) for c in tally.stored.values()),
        "read": len(tally.events), "done": done,
        "kills": sum(soak.kills.values()), "kills_by_role": dict(soak.kills),
        "planted": len(soak.planted), "watching_readers": soak.watching,
        "stale_tmp_repaired": repaired["stale-tmp"], **counts,
        "violations": tally.violations,
    }
    print(f"soak: {soak.seconds:g} s of kills, {len(PRODUCERS)} producers, "
          f"{len(READ_AGENTS) * READERS_PER_AGENT} readers ({soak.watching} watching), "
          "1 supervisor")
    print(f"sent {summary['sent']} (acknowledged), routed {summary['routed']}, "
          f"delivered {summary['delivered']} copies, read {summary['read']}, done {done}; "
          f"claimed again after a kill or a release: {counts['reclaimed']}")
    print("kills: " + ", ".join(f"{r} {n}" for r, n in sorted(soak.kills.items()))
          + f" (total {summary['kills']})")
    print(f"planted {len(soak.planted)} bad files, {counts['dead']} in dead/; doctor removed "
          f"{repaired['stale-tmp']} staging leftovers")
    print(f"duplicates {counts['duplicates']}, lost {counts['lost']}, "
          f"unacknowledged {counts['unacknowledged']}, elapsed {elapsed:.1f} s")
    for violation in tally.violations:
        print(f"VIOLATION: {violation}")
    print(orjson.dumps(summary).decode())
    return summary


def soak_run(seconds: float, rate: float, seed: int, keep: bool) -> int:
    work = Path(tempfile.mkdtemp(prefix="agentmailbox-soak-"))
    soak = Soak(work, seconds, rate, random.Random(seed))
    started = time.monotonic()
    tally = Tally()
    try:
        _setup(soak)
        _run_with_kills(soak)
        if not _finish(soak):
            tally.violations.append(f"did not drain within {DRAIN_TIMEOUT:g} s")
    finally:
        for slot in soak.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()
                slot.proc.wait()
    repaired = _repair(soak, tally)
    _count_acks(soak, tally)
    _count_stored(soak, tally)
    _count_reads(soak, tally)
    counts = _judge(soak, tally)
    summary = _report(soak, tally, counts, repaired, time.monotonic() - started)
    if summary["violations"] or keep:
        print(f"soak: the root and logs are kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if summary["violations"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to kill (60)")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="messages per second per producer (50)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill schedule")
    parser.add_argument("--keep", action="store_true", help="keep the root and logs")
    parser.add_argument("--role", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        ROLES[args.role[0]](*args.role[1:])
        return 0
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    print(f"soak: seed {seed}")
    return soak_run(args.seconds, args.rate, seed, args.keep)


if __name__ == "__main__":
    sys.exit(main())
