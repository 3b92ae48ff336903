/*
 * The inbox claim protocol v2 (docs/PROTOCOL.md), one message id X, checked
 * exhaustively by SPIN: no interleaving of the processes below deletes a copy
 * or loses the id, whichever of them stops for good at whichever step.
 *
 *   rename_noreplace(a, b)  renameat2(RENAME_NOREPLACE): ENOENT if a is gone, EEXIST
 *                           if b exists (even as another name of a's inode)
 *   rename(a, b)            replaces b (only ever used onto a fresh hold name)
 *   settle(src, dst)        rename_noreplace(src, dst): ok or ENOENT: stop;
 *                           EEXIST: rename(src, hold) (ENOENT: stop), then
 *                           rename_noreplace(hold, dst): ok: stop; EEXIST: bury(hold)
 *   claim                   rename_noreplace(new/X, cur/X): ENOENT or EEXIST: skip;
 *                           ok: lstat done/X; exists: settle(cur/X, done/X)
 *                           (a duplicate of finished work); else handed out
 *   done (the owner)        settle(cur/X, done/X)
 *   release (the owner),    settle(cur/X, new/X)
 *   lease expiry (anyone)
 *   retried send            lstat cur/X, lstat done/X (either exists: stop);
 *                           stage tmp/S; link(tmp/S, new/X); unlink tmp/S
 *   doctor --repair         release an expired claim as above; a stale hold:
 *                           rename(hold, own hold), rename_noreplace(own hold,
 *                           new/X): EEXIST: bury(own hold)
 *   bury(a)                 rename(a, dead/<fresh id>)
 *
 * Each system call is one atomic step: one `atomic` per outcome, whose guard is
 * the state in which the call has that outcome. Each lstat is a step of its own
 * and the next step acts on what it saw, however stale. A hold name is fresh for
 * each settle; a bury makes a fresh name in dead/; nobody unlinks a name in
 * new/, cur/ or done/.
 *
 * Processes: two claimers (each owner then marks its claim done, gives it
 * back, or leaves it to its lease), a lease-expiry sweeper acting on a stale
 * observation (it may steal a fresh claim), doctor --repair beside them, and a
 * retried send of X that races the claim. The initial state is X unread in
 * new/, or a v1 half-claim (one inode under new/X and cur/X).
 *
 * Dying. A process that stops for good at some step is, until the end, a
 * process that is slow to take its next step: every interleaving covers it.
 * What dying adds is (1) the doctor may take its hold name, and (2) the end
 * comes while it is mid-way. For (1), the doctor may take any hold name at any
 * time, its owner dead or only slow (a stale age is a guess): a superset of
 * what doctor --repair does. For (2), init checks the end from every reachable
 * state: it freezes everyone where they are (those not finished died there),
 * runs doctor --repair and the next claim, checks, and puts the state back, in
 * one d_step, so the check adds transitions but no states.
 *
 * Invariants, in every state (the monitor):
 *   (a) never deleted: every copy (an inode once linked into new/) has a name
 *       in new/, cur/, done/, tmp/, a hold name or dead/;
 *   (b) never lost: a copy is in new/, cur/, done/ or a hold name (a hold of a
 *       dead process counts: (c) shows the doctor brings it back);
 *   (d) done once: done/X is filled at most once, and never emptied;
 * and at the end (init, after doctor --repair and the next claim):
 *   (c) exactly one name of X is in new/, cur/ or done/; a copy without it
 *       has names in dead/ only.
 *
 * -DEND_AFTER_DOCTOR checks (c) right after doctor --repair, without the next
 * claim (it fails: see README.md). -DDOCTOR_DONE_TWINS adds the doctor step
 * proposed there (claim new/X when done/X exists), to the concurrent doctor and
 * the final one.
 */

#ifndef CLAIMS
#define CLAIMS 2            /* claims per claimer, one after the other */
#endif
#ifndef SWEEPS
#define SWEEPS 2            /* lease-expiry sweeps */
#endif

/* the names of X: each holds the inode under it, 0 when absent */
#define NEW  0
#define CUR  1
#define DONE 2
#define TMP  3              /* tmp/S of the retried send */
#define HOLD(p) (4 + (p))   /* the hold name of process p */
#define NNAMES 9

/* processes with a hold name */
#define C0 0                /* claimer */
#define C1 1                /* claimer */
#define SW 2                /* lease-expiry sweeper */
#define DR 3                /* doctor --repair, beside the others */
#define FD 4                /* doctor --repair, at the end */

/* inodes: 1 is the first copy of X, 2 the copy of the retried send */
#define NCOPY 3

byte nm[NNAMES];
byte dead[NCOPY];           /* names in dead/, per inode */
bool published[NCOPY];      /* the inode was linked into new/: a copy of X */
byte ndone;                 /* how many times a name was placed in done/ */
bool ready;                 /* the initial state is set */

/* how many names inode i has (its link count) */
#define ON(i, n)  (nm[n] == i -> 1 : 0)
#define NAMES(i)  (ON(i, NEW) + ON(i, CUR) + ON(i, DONE) + ON(i, TMP) + ON(i, HOLD(C0)) \
                   + ON(i, HOLD(C1)) + ON(i, HOLD(SW)) + ON(i, HOLD(DR)) + ON(i, HOLD(FD)) \
                   + dead[i])

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

/* rename_noreplace(hold, dst), then bury on EEXIST */
inline place_hold(h, dst) {
    if
    :: atomic { nm[h] != 0 && nm[dst] == 0 -> nm[dst] = nm[h]; nm[h] = 0; placed(dst) }
    :: nm[h] != 0 && nm[dst] != 0 -> bury(h)    /* EEXIST */
    :: nm[h] == 0                               /* ENOENT: the doctor took it */
    fi
}

inline settle(me, src, dst) {
    if
    :: atomic { nm[src] != 0 && nm[dst] == 0 -> nm[dst] = nm[src]; nm[src] = 0; placed(dst) }
    :: nm[src] == 0                             /* ENOENT: not ours any more */
    :: nm[src] != 0 && nm[dst] != 0 ->          /* EEXIST: another copy holds dst */
        if
        :: atomic { nm[src] != 0 -> nm[HOLD(me)] = nm[src]; nm[src] = 0 }
            -> place_hold(HOLD(me), dst)
        :: nm[src] == 0
        fi
    fi
}

/* the doctor takes the hold name of process p and puts it back in new/ */
inline recover(me, p) {
    if
    :: atomic { nm[HOLD(p)] != 0 -> nm[HOLD(me)] = nm[HOLD(p)]; nm[HOLD(p)] = 0 }
        -> place_hold(HOLD(me), NEW)
    :: nm[HOLD(p)] == 0
    fi
}

/* handed out; the owner ... */
inline owner(me) {
    if
    :: true -> settle(me, CUR, DONE)    /* ... marks it done */
    :: true -> settle(me, CUR, NEW)     /* ... gives it back */
    :: true                             /* ... leaves it to its lease */
    fi
}

/* lstat name n: another name of the claimed inode there is legitimate */
inline legit(n) {
    if
    :: ino != 0 && nm[n] == ino -> ino = 0
    :: else
    fi
}

inline claim(me) {
    if
    :: atomic { nm[NEW] != 0 && nm[CUR] == 0 -> nm[CUR] = nm[NEW]; nm[NEW] = 0 } ->
        if
        :: nm[DONE] != 0 -> settle(me, CUR, DONE)   /* lstat done/X: finished work */
        :: nm[DONE] == 0 ->
#ifdef HARDLINK_DEFENCE
            /* Inbox._load_claimed: fstat shows a second name, not the sender's
               tmp/S (lstat), and lstat cur/X still shows two: bury cur/X */
            if
            :: atomic { nm[CUR] != 0 && NAMES(nm[CUR]) > 1 -> ino = nm[CUR] } ->
                legit(TMP);
                if
                :: ino != 0 && nm[CUR] != 0 && NAMES(nm[CUR]) > 1 -> ino = 0; bury(CUR)
                :: else -> ino = 0; owner(me)
                fi
            :: atomic { nm[CUR] != 0 && NAMES(nm[CUR]) == 1 } -> owner(me)
            :: nm[CUR] == 0                         /* open: ENOENT */
            fi
#else
            owner(me)
#endif
        fi
    :: nm[NEW] == 0                                 /* ENOENT: lost the race */
    :: nm[NEW] != 0 && nm[CUR] != 0                 /* EEXIST: another copy is claimed */
    fi
}

proctype claimer(byte me) {
    byte n;
#ifdef HARDLINK_DEFENCE
    byte ino;
#endif
    for (n : 1 .. CLAIMS) {
        claim(me)
    }
}

proctype sweeper() {
    byte n;
    for (n : 1 .. SWEEPS) {
        settle(SW, CUR, NEW)    /* it saw the lease expired, maybe long ago */
    }
}

proctype doctor() {
#ifdef HARDLINK_DEFENCE
    byte ino;
#endif
    if
    :: true -> settle(DR, CUR, NEW)     /* an expired claim */
    :: true
    fi;
    if                                  /* each hold name it meets: stale or not yet */
    :: true -> recover(DR, C0)
    :: true
    fi;
    if
    :: true -> recover(DR, C1)
    :: true
    fi;
    if
    :: true -> recover(DR, SW)
    :: true
    fi;
#ifdef DOCTOR_DONE_TWINS
    if
    :: nm[DONE] != 0 -> claim(DR)       /* lstat done/X: a copy in new/ is finished work */
    :: nm[DONE] == 0
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
            if                                  /* link(tmp/S, new/X) */
            :: atomic { nm[NEW] == 0 -> nm[NEW] = nm[TMP]; published[2] = true }
            :: nm[NEW] != 0                     /* EEXIST: not published */
            fi;
            nm[TMP] = 0                         /* unlink tmp/S (both ways) */
        fi
    fi
}

#define KEPT(i)   (!published[i] || NAMES(i) > 0)
#define HELD      (nm[NEW] != 0 || nm[CUR] != 0 || nm[DONE] != 0 || nm[HOLD(C0)] != 0 \
                   || nm[HOLD(C1)] != 0 || nm[HOLD(SW)] != 0 || nm[HOLD(DR)] != 0)
#define DONE_ONCE (ndone == 0 || (ndone == 1 && nm[DONE] != 0))
#define SAFE      (KEPT(1) && KEPT(2) && HELD && DONE_ONCE)

active proctype monitor() {
end:
    atomic { ready && !SAFE -> assert(SAFE) }
}

/* ---- the end: doctor --repair and the next claim, on a frozen state ---------------- */

#define SLOTS         ((nm[NEW] != 0 -> 1 : 0) + (nm[CUR] != 0 -> 1 : 0) + (nm[DONE] != 0 -> 1 : 0))
#define LIVE(i)       (nm[NEW] == i || nm[CUR] == i || nm[DONE] == i)
#define ONLY_DEAD(i)  (!published[i] || LIVE(i) || (NAMES(i) == dead[i] && dead[i] > 0))

/* the same system calls, deterministic (d_step), on a state no one else touches */
inline end_place(h, dst) {
    if
    :: nm[h] != 0 && nm[dst] == 0 -> nm[dst] = nm[h]; nm[h] = 0; placed(dst)
    :: nm[h] != 0 && nm[dst] != 0 -> dead[nm[h]]++; nm[h] = 0
    :: else
    fi
}

inline end_settle(src, dst, h) {
    if
    :: nm[src] != 0 && nm[dst] == 0 -> nm[dst] = nm[src]; nm[src] = 0; placed(dst)
    :: nm[src] != 0 && nm[dst] != 0 -> nm[h] = nm[src]; nm[src] = 0; end_place(h, dst)
    :: else
    fi
}

inline end_recover(p, h) {
    if
    :: nm[HOLD(p)] != 0 -> nm[h] = nm[HOLD(p)]; nm[HOLD(p)] = 0; end_place(h, NEW)
    :: else
    fi
}

inline end_holds(h) {
    end_recover(C0, h); end_recover(C1, h); end_recover(SW, h); end_recover(DR, h)
}

inline end_claim(h) {
    if
    :: nm[NEW] != 0 && nm[CUR] == 0 ->
        nm[CUR] = nm[NEW]; nm[NEW] = 0;
        if
        :: nm[DONE] != 0 -> end_settle(CUR, DONE, h)
#ifdef HARDLINK_DEFENCE
        :: nm[DONE] == 0 && NAMES(nm[CUR]) > 1 && nm[TMP] != nm[CUR] -> dead[nm[CUR]]++; nm[CUR] = 0
#endif
        :: else
        fi
    :: else
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

/* doctor --repair meets the claim before or after the hold names (its listing order) */
inline the_end(claim_first) {
    d_step {
        save();
        if
        :: claim_first -> end_settle(CUR, NEW, HOLD(FD)); end_holds(HOLD(FD))
        :: else -> end_holds(HOLD(FD)); end_settle(CUR, NEW, HOLD(FD))
        fi;
        nm[TMP] = 0;                            /* a stale tmp/S: published, or never sent */
#ifdef DOCTOR_DONE_TWINS
        if
        :: nm[DONE] != 0 -> end_claim(HOLD(FD))
        :: else
        fi;
#endif
        assert(SAFE);
#ifndef END_AFTER_DOCTOR
        end_claim(HOLD(FD));                     /* the next reader */
        assert(SAFE);
#endif
        assert(SLOTS == 1);
        assert(ONLY_DEAD(1) && ONLY_DEAD(2));
        restore()
    }
}

init {
    byte i, s_nm[NNAMES], s_dead[NCOPY], s_ndone;
    bool s_pub[NCOPY];
    atomic {
        if
        :: nm[NEW] = 1                          /* X delivered, unread */
        :: nm[NEW] = 1; nm[CUR] = 1             /* a v1 half-claim left behind */
        fi;
        published[1] = true;
        ready = true;
        run claimer(C0); run claimer(C1); run sweeper(); run doctor(); run resend()
    }
end:
    do
    :: the_end(true)
    :: the_end(false)
    od
}
