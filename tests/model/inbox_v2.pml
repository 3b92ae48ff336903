/*
 * The inbox claim protocol v2 as implemented (agentmailbox/inbox.py, doctor.py and
 * fs.Disk.move), for one message id X, checked exhaustively by SPIN: can any
 * interleaving of the processes below delete a copy or lose the id, whichever of
 * them stops for good at whichever step?
 *
 *   move(a, b)          Disk.move: renameat2(RENAME_NOREPLACE): ENOENT if a is gone,
 *                       EEXIST if b exists (even as another name of a's inode)
 *   bury(a)             DeadLetters.bury: rename(a, dead/<fresh id>), whatever a names
 *   settle(src, dst)    Inbox._settle: move(src, dst): ok or ENOENT: stop; EEXIST:
 *                       move(src, own hold) (ENOENT: stop), then settle_hold:
 *                       move(hold, dst): ok or ENOENT: stop; EEXIST: bury(hold)
 *   claim               Inbox._take: move(new/X, cur/X): ENOENT or EEXIST: skip; ok:
 *                       lstat done/X: there: settle(cur/X, done/X); else
 *                       _load_claimed: open cur/X (ENOENT: skip) and fstat it; a
 *                       second link that is not _is_own_staging: bury(cur/X); else
 *                       handed out: the owner marks it done (settle(cur/X, done/X)),
 *                       gives it back (settle(cur/X, new/X)) or leaves it
 *   _is_own_staging     the fstat saw exactly 2 links, and lstat tmp/S is the same
 *                       inode, or lstat of the opened name then shows one link
 *   lease expiry        Inbox.requeue_expired: lstat cur/X: one link (and the lease
 *                       ran out): settle(cur/X, new/X), however much later
 *   retried send        Inbox.deliver: lstat cur/X, lstat done/X (either: stop);
 *                       stage tmp/S; renameat2(tmp/S, new/X, RENAME_NOREPLACE)
 *                       (EEXIST: unlink tmp/S); -DSEND_LINK: link(tmp/S, new/X),
 *                       then unlink tmp/S, as a shell writer does (PROTOCOL.md §22)
 *   doctor --repair     _Doctor._agent, in its order:
 *     _tmp_dir          unlink tmp/S (published: at any age; unpublished: once stale)
 *     _new              _check_file(new/X): open and fstat; a second link that is
 *                       not _is_own_staging nor _half_claimed (lstat cur/X: the
 *                       same inode): bury(new/X); if it passed and lstat done/X
 *                       shows X done: claim (which settles it into done/: dead/)
 *     _cur              in listing order, each hold name (once stale: move it to a
 *                       hold of its own, then to new/X; EEXIST: bury) and cur/X:
 *                       lstat cur/X, lstat new/X: one inode, the first look saw
 *                       more than one link: unlink(new/X) (a version 1 half-claim);
 *                       else _check_file(cur/X) (its other name new/X) and, if it
 *                       passed and the lease ran out, settle(cur/X, new/X)
 *
 * Each system call is one atomic step: one `atomic` per outcome, whose guard is
 * the state in which the call has that outcome. Each lstat and fstat is a step of
 * its own, and what the process does next rests on what it saw, however stale;
 * every call on a path acts on whatever that path names by then. A hold name is
 * fresh for each settle; a bury makes a fresh name in dead/. The only unlinks are
 * of tmp/S and the doctor's repair of a half-claim. An inode's link count is its
 * number of names, dead/ names included. What a process decides from what it saw
 * (its local variables) is folded into the step that saw it.
 *
 * Time is not modeled: any claim may be past its lease and any hold past its
 * stale age whenever a process looks (a superset of what clocks allow: a process
 * may be paused for any time between two steps).
 *
 * Processes: two claimers (one claims twice, one claims once; -DCLAIMS1=2: both
 * twice), a lease-expiry sweeper (two sweeps; -DSWEEPS=0: none),
 * doctor --repair beside them (-DDOCTORS=2: two of them), and a retried send of X
 * that races the claim. The initial state is X unread in new/ (a version 2 root),
 * or a version 1 half-claim: one inode under new/X and cur/X, two links (a
 * version 1 root, whose version 1 programs have stopped).
 *
 * Dying. A process that stops for good at some step is, until the end, a process
 * that is slow to take its next step: every interleaving covers it. What dying
 * adds is (1) the doctor may take its hold name, and (2) the end comes while it is
 * mid-way. For (1), the doctor takes a hold once it is older than the stale age,
 * whether its owner died or is only paused (the code cannot tell them apart), so
 * here it may take any hold at any time; -DHOLDS_OF_STOPPED lets it take only the
 * hold of a process that stopped there for good. For (2), init checks the end from
 * every reachable state: it freezes everyone where they are (those not finished
 * died there), lets every lease and stale age run out, runs doctor --repair, checks,
 * and puts the state back, in one d_step, so the check adds transitions but no
 * states.
 *
 * Invariants, in every state (the monitor):
 *   (a) never deleted: every copy (an inode once linked into new/) has a name
 *       in new/, cur/, done/, tmp/, a hold name or dead/;
 *   (b) never lost: a copy is in new/, cur/, done/ or a hold name (a hold of a
 *       stopped process counts: (c) shows the doctor brings it back);
 *   (d) done once: done/X is filled at most once, and never emptied;
 * and at the end (init, right after doctor --repair):
 *   (c) exactly one name of X is in new/, cur/ or done/; a copy without one has
 *       names in dead/ only.
 *
 * The code as it is fails (a), (b) and (c); README.md has the trails. The fixes,
 * each one change in the code, checked here:
 *   -DBURY_ONLY_OPENED    a reader quarantines a file with a second link only if
 *                         the name it opened still shows that file at its last
 *                         lstat: a name that moved on is no longer its claim
 *   -DHALF_CLAIM_V1_ONLY  the doctor repairs half-claims only in a format 1 root
 *   -DDOCTOR_CUR_FIRST    the doctor looks at cur/ before new/, so a copy it gives
 *                         back to new/ is checked against done/ in the same run
 *   -DFIXED               all three
 * Other variants:
 *   -DHALF_CLAIM_VIA_HOLD the half-claim repair takes new/X to a hold of its own,
 *                         lstats the hold and cur/X, and unlinks the hold (one
 *                         inode) or moves it back to new/X (two)
 *   -DHOLDS_OF_STOPPED    the doctor takes only holds whose owner stopped there
 *   -DDOCTORS=2           two doctors --repair beside the others
 *   -DEND_AFTER_CLAIM     check (c) after doctor --repair and the next claim
 *   -DSWEEP_ANY_LINKS     the sweeper releases a claim whatever its link count
 *   -DSEND_LINK           the retried send publishes by link, then unlink (shell
 *                         writers, and the library without RENAME_NOREPLACE): tmp/S
 *                         and new/X are one inode in between
 *   -DINITIAL=1|2         start from X unread (1) or a half-claim (2) only
 */

#ifdef FIXED
#define BURY_ONLY_OPENED
#define HALF_CLAIM_V1_ONLY
#define DOCTOR_CUR_FIRST
#endif

#ifndef CLAIMS
#define CLAIMS 2            /* claims by claimer C0, one after the other */
#endif
#ifndef CLAIMS1
#define CLAIMS1 1           /* claims by claimer C1 (-DCLAIMS1=2: 2.6 times the states) */
#endif
#ifndef SWEEPS
#define SWEEPS 2            /* lease-expiry sweeps */
#endif
#ifndef DOCTORS
#define DOCTORS 1           /* doctors --repair beside the others */
#endif
#ifndef INITIAL
#define INITIAL 0           /* 0: both initial states */
#endif

/* the names of X: each holds the inode under it, 0 when absent */
#define NEW  0
#define CUR  1
#define DONE 2
#define TMP  3              /* tmp/S of the retried send */
#define HOLD(p) (4 + (p))   /* the hold name of process p */

/* processes with a hold name */
#define C0 0                /* claimer */
#define C1 1                /* claimer */
#define SW 2                /* lease-expiry sweeper */
#define DR 3                /* doctor --repair, beside the others */
#if DOCTORS > 1
#define D2 4                /* a second doctor --repair */
#define FD 5                /* doctor --repair, at the end */
#define NNAMES 10
#else
#define FD 4
#define NNAMES 9
#endif
#define IS_DOCTOR(p) ((p) >= DR)

/* inodes: 1 is the first copy of X, 2 the copy of the retried send */
#define NCOPY 3

/* what a reader concluded about the file it opened */
#define PASS    1           /* one link, or the sender's staging name */
#define GONE    2           /* nothing there, or no longer the file it opened */
#define ASK     3           /* a second link, not yet explained */

byte nm[NNAMES];
byte dead[NCOPY];           /* names in dead/, per inode */
bool published[NCOPY];      /* the inode was linked into new/: a copy of X */
byte ndone;                 /* how many times a name was placed in done/ */
bool ready;                 /* the initial state is set */
bool v1root;                /* "format": 1 (the initial state is a half-claim) */
#ifdef HOLDS_OF_STOPPED
bool stopped[FD];           /* the process stopped for good holding its hold name */
#endif

/* how many names inode i has: its link count */
#define ON(i, n)  (nm[n] == i -> 1 : 0)
#if DOCTORS > 1
#define ON_D2(i)  + ON(i, HOLD(D2))
#else
#define ON_D2(i)
#endif
#define NAMES(i)  (ON(i, NEW) + ON(i, CUR) + ON(i, DONE) + ON(i, TMP) + ON(i, HOLD(C0)) \
                   + ON(i, HOLD(C1)) + ON(i, HOLD(SW)) + ON(i, HOLD(DR)) ON_D2(i) \
                   + ON(i, HOLD(FD)) + dead[i])

inline placed(dst) {
    if
    :: dst == DONE -> ndone++
    :: else
    fi
}

inline bury(a) {
    atomic {
        if
        :: nm[a] != 0 -> dead[nm[a]]++; nm[a] = 0
        :: else
        fi
    }
}

/* Inbox.settle_hold: move(hold, dst), bury the hold on EEXIST */
inline place_hold(h, dst) {
    if
    :: atomic { nm[h] != 0 && nm[dst] == 0 -> nm[dst] = nm[h]; nm[h] = 0; placed(dst) }
    :: nm[h] != 0 && nm[dst] != 0 -> bury(h)    /* EEXIST */
    :: nm[h] == 0                               /* ENOENT: a doctor took it */
    fi
}

#ifdef HOLDS_OF_STOPPED
#define MAY_STOP(me) :: !IS_DOCTOR(me) -> stopped[me] = true; goto stop
#else
#define MAY_STOP(me)
#endif

/* Inbox._settle */
inline settle(me, src, dst) {
    if
    :: atomic { nm[src] != 0 && nm[dst] == 0 -> nm[dst] = nm[src]; nm[src] = 0; placed(dst) }
    :: nm[src] == 0                             /* ENOENT: not ours any more */
    :: nm[src] != 0 && nm[dst] != 0 ->          /* EEXIST: another copy holds dst */
        if
        :: atomic { nm[src] != 0 -> nm[HOLD(me)] = nm[src]; nm[src] = 0 } ->
            if
            :: true
            MAY_STOP(me)
            fi;
            place_hold(HOLD(me), dst)
        :: nm[src] == 0
        fi
    fi
}

#ifdef HOLDS_OF_STOPPED
#define STALE(p) stopped[p] &&
#else
#define STALE(p)
#endif

/* Inbox.recover_hold by doctor me: the hold of process p, back to new/ */
inline recover(me, p) {
    atomic { STALE(p) nm[HOLD(p)] != 0 -> nm[HOLD(me)] = nm[HOLD(p)]; nm[HOLD(p)] = 0 };
    place_hold(HOLD(me), NEW)
}

/* handed out; the owner ... */
inline owner(me) {
    if
    :: true -> settle(me, CUR, DONE)    /* ... marks it done */
    :: true -> settle(me, CUR, NEW)     /* ... gives it back */
    :: true                             /* ... leaves it to its lease */
    fi
}

/* open name n and fstat it */
inline opened(n) {
    atomic {
        ino = nm[n]; nl = (ino != 0 -> NAMES(ino) : 0);
        v = (ino == 0 -> GONE : (nl == 1 -> PASS : ASK))
    }
}

/* Inbox._is_own_staging for the file open at name n: PASS, or still ASK */
inline own_staging(n) {
    if
    :: v == ASK && nl == 2 ->
        atomic {                            /* scan tmp/, lstat tmp/S: the same inode */
            if
            :: nm[TMP] == ino -> v = PASS
            :: else
            fi
        };
        atomic {                            /* lstat n: one link (tmp/S was unlinked) */
            if
            :: v == ASK && nm[n] != 0 && NAMES(nm[n]) == 1 -> v = PASS
#ifdef BURY_ONLY_OPENED
            :: v == ASK && nm[n] != ino -> v = GONE     /* n shows another file now */
#endif
            :: else
            fi
        }
    :: else
    fi
}

inline forget() {
    ino = 0; nl = 0; v = 0
}

/* Inbox._take, for claimer me (a doctor ignores what it claimed) */
inline claim(me) {
    if
    :: atomic { nm[NEW] != 0 && nm[CUR] == 0 -> nm[CUR] = nm[NEW]; nm[NEW] = 0 } ->
        if
        :: nm[DONE] != 0 -> settle(me, CUR, DONE)   /* lstat done/X: finished work */
        :: nm[DONE] == 0 ->
            opened(CUR);
            own_staging(CUR);
            if
            :: v == ASK -> atomic { forget(); bury(CUR) }  /* "hard link to a file elsewhere" */
            :: v == PASS && !IS_DOCTOR(me) -> forget(); owner(me)
            :: else -> forget()
            fi
        fi
    :: nm[NEW] == 0                                 /* ENOENT: lost the race */
    :: nm[NEW] != 0 && nm[CUR] != 0                 /* EEXIST: another copy is claimed */
    fi
}

proctype claimer(byte me) {
    byte n, ino, nl, v;
    for (n : 1 .. (me == C0 -> CLAIMS : CLAIMS1)) {
        claim(me)
    }
stop:
    skip
}

proctype sweeper() {
#if SWEEPS > 0
    byte n;
    for (n : 1 .. SWEEPS) {
        if
#ifdef SWEEP_ANY_LINKS
        :: nm[CUR] != 0 -> settle(SW, CUR, NEW)
#else
        :: nm[CUR] != 0 && NAMES(nm[CUR]) == 1 ->   /* lstat cur/X: one link, lease out */
            settle(SW, CUR, NEW)                    /* release, maybe much later */
#endif
        fi                                          /* (a sweep that finds none waits) */
    }
#endif
stop:
    skip
}

/* _Doctor._check_file(n): ok if the file passed; a hard link is buried */
inline check_file(n, other) {
    opened(n);
    own_staging(n);
    if                                      /* _half_claimed: lstat the other name */
    :: v == ASK && nm[other] == ino -> v = PASS
    :: v == ASK && nm[other] != ino -> atomic { forget(); bury(n) }    /* a hard link */
    :: else
    fi;
    atomic { ok = (v == PASS); forget() }
}

#ifdef HALF_CLAIM_V1_ONLY
#define V1_ROOT && v1root
#else
#define V1_ROOT
#endif

/* the repair of a half-claim: cur/X and new/X seen as one inode */
inline half_claim(me) {
#ifdef HALF_CLAIM_VIA_HOLD
    if
    :: atomic { nm[NEW] != 0 -> nm[HOLD(me)] = nm[NEW]; nm[NEW] = 0 } ->
        if                                  /* lstat the hold and cur/X: ... */
        :: atomic { nm[HOLD(me)] != 0 && nm[HOLD(me)] == nm[CUR] -> nm[HOLD(me)] = 0 }
                                            /* ... one inode: unlink the hold */
        :: else -> place_hold(HOLD(me), NEW)    /* ... two: give it back */
        fi
    :: nm[NEW] == 0
    fi
#else
    nm[NEW] = 0                             /* unlink(new/X): whatever it names */
#endif
}

/* _Doctor._cur for cur/X */
inline doctor_cur(me) {
    atomic { a = nm[CUR]; an = (a != 0 -> NAMES(a) : 0) };     /* lstat cur/X */
    atomic {                                                    /* lstat new/X */
        half = (a != 0 && a == nm[NEW] && an > 1 V1_ROOT); seen = (a != 0); a = 0; an = 0
    };
    if
    :: half -> half = false; seen = false; half_claim(me)
    :: else ->
        check_file(CUR, NEW);
        if
        :: ok && seen -> ok = false; seen = false; settle(me, CUR, NEW)  /* lease ran out */
        :: true -> ok = false; seen = false
        fi
    fi
}

/* _Doctor._cur for each hold name: stale (taken) or not yet */
inline doctor_holds(me) {
    if :: recover(me, C0) :: true fi;
    if :: recover(me, C1) :: true fi;
    if :: recover(me, SW) :: true fi;
#if DOCTORS > 1
    if :: me == DR -> recover(me, D2) :: me == D2 -> recover(me, DR) :: true fi
#endif
}

/* _Doctor._new */
inline doctor_new(me) {
    check_file(NEW, CUR);
    if
    :: ok && nm[DONE] != 0 -> ok = false; claim(me)    /* lstat done/X: a copy of done work */
    :: else -> ok = false
    fi
}

proctype doctor(byte me) {
    byte ino, nl, v, a, an;
    bool half, seen, ok;
    if                                  /* _tmp_dir: published, or stale */
    :: nm[TMP] = 0
    :: true
    fi;
#ifndef DOCTOR_CUR_FIRST
    doctor_new(me);
#endif
    if                                  /* _cur, in listing order */
    :: true -> doctor_holds(me); doctor_cur(me)
    :: true -> doctor_cur(me); doctor_holds(me)
    fi;
#ifdef DOCTOR_CUR_FIRST
    doctor_new(me);
#endif
stop:
    skip
}

/* Inbox.deliver's publish: Disk.place, one renameat2(tmp/S, new/X, RENAME_NOREPLACE);
   -DSEND_LINK: link(tmp/S, new/X), then unlink tmp/S (a shell writer, §22, or the
   library on a filesystem without the flag) */
inline publish() {
#ifdef SEND_LINK
    if
    :: atomic { nm[TMP] != 0 && nm[NEW] == 0 -> nm[NEW] = nm[TMP]; published[2] = true }
    :: nm[TMP] != 0 && nm[NEW] != 0             /* EEXIST: not published */
    :: nm[TMP] == 0                             /* ENOENT: the doctor removed it */
    fi;
    nm[TMP] = 0                                 /* unlink tmp/S (whatever happened) */
#else
    if
    :: atomic { nm[TMP] != 0 && nm[NEW] == 0 ->
                nm[NEW] = nm[TMP]; nm[TMP] = 0; published[2] = true }
    :: nm[TMP] != 0 && nm[NEW] != 0 -> nm[TMP] = 0  /* EEXIST: unlink tmp/S */
    :: nm[TMP] == 0                             /* ENOENT: the doctor removed it */
    fi
#endif
}

proctype resend() {
    if
    :: nm[CUR] != 0                             /* lstat cur/X: held, stop */
    :: nm[CUR] == 0 ->
        if
        :: nm[DONE] != 0                        /* lstat done/X: held, stop */
        :: nm[DONE] == 0 ->
            nm[TMP] = 2;                        /* stage tmp/S */
            publish()
        fi
    fi
}

#define KEPT(i)   (!published[i] || NAMES(i) > 0)
#if DOCTORS > 1
#define HELD_D2   || nm[HOLD(D2)] != 0
#else
#define HELD_D2
#endif
#define HELD      (nm[NEW] != 0 || nm[CUR] != 0 || nm[DONE] != 0 || nm[HOLD(C0)] != 0 \
                   || nm[HOLD(C1)] != 0 || nm[HOLD(SW)] != 0 || nm[HOLD(DR)] != 0 HELD_D2)
#define DONE_ONCE (ndone == 0 || (ndone == 1 && nm[DONE] != 0))
#define SAFE      (KEPT(1) && KEPT(2) && HELD && DONE_ONCE)

/* one assertion per line: a failure names its line, and the line its invariant */
inline invariants() {
    assert(KEPT(1) && KEPT(2));         /* (a) never deleted */
    assert(HELD);                       /* (b) never lost */
    assert(DONE_ONCE)                   /* (d) done once */
}

active proctype monitor() {
end:
    atomic { ready && !SAFE -> invariants() }
}

/* ---- the end: doctor --repair on a frozen state ----------------------------------- */

#define SLOTS         ((nm[NEW] != 0 -> 1 : 0) + (nm[CUR] != 0 -> 1 : 0) + (nm[DONE] != 0 -> 1 : 0))
#define LIVE(i)       (nm[NEW] == i || nm[CUR] == i || nm[DONE] == i)
#define ONLY_DEAD(i)  (!published[i] || LIVE(i) || (NAMES(i) == dead[i] && dead[i] > 0))

/* the same system calls, deterministic (d_step), on a state no one else touches;
   the hold name of the final doctor is HOLD(FD) */
inline end_bury(n) {
    dead[nm[n]]++; nm[n] = 0
}

inline end_place(dst) {
    if
    :: nm[HOLD(FD)] != 0 && nm[dst] == 0 -> nm[dst] = nm[HOLD(FD)]; nm[HOLD(FD)] = 0; placed(dst)
    :: nm[HOLD(FD)] != 0 && nm[dst] != 0 -> end_bury(HOLD(FD))
    :: else
    fi
}

inline end_settle(src, dst) {
    if
    :: nm[src] != 0 && nm[dst] == 0 -> nm[dst] = nm[src]; nm[src] = 0; placed(dst)
    :: nm[src] != 0 && nm[dst] != 0 -> nm[HOLD(FD)] = nm[src]; nm[src] = 0; end_place(dst)
    :: else
    fi
}

inline end_recover(p) {
    if
    :: nm[HOLD(p)] != 0 -> nm[HOLD(FD)] = nm[HOLD(p)]; nm[HOLD(p)] = 0; end_place(NEW)
    :: else
    fi
}

inline end_holds() {
    end_recover(C0); end_recover(C1); end_recover(SW); end_recover(DR);
#if DOCTORS > 1
    end_recover(D2)
#endif
}

/* _check_file on a frozen state: tmp/S is gone, so a second link passes only as a
   half-claim */
#define END_PASSES(n, other) (NAMES(nm[n]) == 1 || nm[other] == nm[n])

inline end_claim() {
    if
    :: nm[NEW] != 0 && nm[CUR] == 0 ->
        nm[CUR] = nm[NEW]; nm[NEW] = 0;
        if
        :: nm[DONE] != 0 -> end_settle(CUR, DONE)
        :: nm[DONE] == 0 && NAMES(nm[CUR]) > 1 -> end_bury(CUR)
        :: else
        fi
    :: else
    fi
}

inline end_new() {
    if
    :: nm[NEW] != 0 && !END_PASSES(NEW, CUR) -> end_bury(NEW)
    :: nm[NEW] != 0 && END_PASSES(NEW, CUR) && nm[DONE] != 0 -> end_claim()
    :: else
    fi
}

inline end_cur() {
    if
    :: nm[CUR] != 0 && nm[CUR] == nm[NEW] V1_ROOT -> nm[NEW] = 0    /* a half-claim */
    :: else ->
        if
        :: nm[CUR] != 0 && !END_PASSES(CUR, NEW) -> end_bury(CUR)
        :: nm[CUR] != 0 && END_PASSES(CUR, NEW) -> end_settle(CUR, NEW)
        :: else
        fi
    fi
}

inline save() {
    for (i : 0 .. NNAMES - 1) { s_nm[i] = nm[i] }
    for (i : 0 .. NCOPY - 1) { s_dead[i] = dead[i]; s_pub[i] = published[i] }
    s_ndone = ndone
}

inline restore() {
    for (i : 0 .. NNAMES - 1) { nm[i] = s_nm[i]; s_nm[i] = 0 }
    for (i : 0 .. NCOPY - 1) {
        dead[i] = s_dead[i]; published[i] = s_pub[i]; s_dead[i] = 0; s_pub[i] = false
    }
    ndone = s_ndone; s_ndone = 0; i = 0
}

/* doctor --repair meets cur/X before or after the hold names (its listing order) */
inline the_end(cur_first) {
    d_step {
        save();
        nm[TMP] = 0;                            /* _tmp_dir: published, or stale */
#ifndef DOCTOR_CUR_FIRST
        end_new();
#endif
        if
        :: cur_first -> end_cur(); end_holds()
        :: else -> end_holds(); end_cur()
        fi;
#ifdef DOCTOR_CUR_FIRST
        end_new();
#endif
        invariants();
#ifdef END_AFTER_CLAIM
        end_claim();                            /* the next reader */
        invariants();
#endif
        assert(SLOTS == 1);                     /* (c) in one place */
        assert(ONLY_DEAD(1) && ONLY_DEAD(2));   /* (c) other copies in dead/ only */
        restore()
    }
}

init {
    byte i, s_nm[NNAMES], s_dead[NCOPY], s_ndone;
    bool s_pub[NCOPY];
    atomic {
        if
        :: INITIAL != 2 -> nm[NEW] = 1          /* X delivered, unread */
        :: INITIAL != 1 -> nm[NEW] = 1; nm[CUR] = 1; v1root = true  /* a v1 half-claim */
        fi;
        published[1] = true;
        ready = true;
        run claimer(C0); run claimer(C1); run sweeper(); run doctor(DR); run resend();
#if DOCTORS > 1
        run doctor(D2)
#endif
    }
end:
    do
    :: the_end(true)
    :: the_end(false)
    od
}
