/*
 * The inbox claim protocol v1 (agentmailbox/inbox.py and doctor.py as of c1af457),
 * one message X, checked exhaustively by SPIN. SPIN must find a state in which
 * the message has no name left: this model exists to prove the checker finds
 * that class of bug (see tests/model/README.md for the trail).
 *
 *   claim    link(new/X, cur/X), then unlink(new/X)          Disk.take
 *            EEXIST: lstat new/X, lstat cur/X; one inode:
 *            unlink(new/X), two inodes: bury new/X           Inbox._settle_collision
 *            won, but lstat done/X exists: lstat cur/X;
 *            one inode: unlink(cur/X), else bury cur/X       Inbox._drop_done_twin
 *   release  rename(cur/X, new/X)                            Inbox.release
 *   expiry   rename(cur/X, new/X)                            Inbox.requeue_expired
 *   done     rename(cur/X, done/X)                           Inbox.done
 *   doctor   lstat cur/X, lstat new/X; one inode: unlink
 *            new/X, else (lease expired) release             Doctor._cur
 *
 * Every system call is one atomic step; every lstat is a step of its own, and
 * what it saw is kept in a local variable, so decisions are made on stale
 * observations exactly as the code makes them. Unlink and bury act on a path:
 * they remove or move whatever is under that name when they run.
 */

#define OK      0
#define ENOENT  1
#define EEXIST  2

/* the names of X: each holds the inode under it, 0 when the name is absent */
#define NEW  0
#define CUR  1
#define DONE 2

byte nm[3];
byte dead[2];   /* names in dead/ per inode: every bury makes a fresh one */
bool ready;     /* the initial state is set */

/* link(a, b): fails EEXIST if b exists, ENOENT if a is gone */
inline link(a, b, r) {
    d_step {
        if
        :: nm[a] == 0 -> r = ENOENT
        :: nm[a] != 0 && nm[b] != 0 -> r = EEXIST
        :: else -> nm[b] = nm[a]; r = OK
        fi
    }
}

/* rename(a, b): replaces b; a no-op success if b is another name of a's inode */
inline move(a, b, r) {
    d_step {
        if
        :: nm[a] == 0 -> r = ENOENT
        :: nm[a] != 0 && nm[a] == nm[b] -> r = OK
        :: else -> nm[b] = nm[a]; nm[a] = 0; r = OK
        fi
    }
}

inline unlink(a) {
    nm[a] = 0
}

/* Dead.bury: rename(a, dead/<fresh id>) */
inline bury(a) {
    d_step {
        if
        :: nm[a] != 0 -> dead[nm[a]]++; nm[a] = 0
        :: else
        fi
    }
}

proctype claimer() {
    byte r, a, b;
    link(NEW, CUR, r);
    if
    :: r == EEXIST ->
        a = nm[NEW];                    /* lstat new/X */
        b = nm[CUR];                    /* lstat cur/X */
        if
        :: a != 0 && b != 0 && a == b -> unlink(NEW)
        :: a != 0 && b != 0 && a != b -> bury(NEW)
        :: else
        fi
    :: r == OK ->
        unlink(NEW);
        a = nm[DONE];                   /* lstat done/X */
        if
        :: a != 0 ->
            b = nm[CUR];                /* lstat cur/X */
            if
            :: b != 0 && a == b -> unlink(CUR)
            :: else -> bury(CUR)
            fi
        :: else ->                      /* handed out: the owner ... */
            if
            :: true -> move(CUR, DONE, r)   /* ... marks it done */
            :: true -> move(CUR, NEW, r)    /* ... gives it back */
            :: true                         /* ... leaves it to its lease */
            fi
        fi
    :: else
    fi
}

proctype expirer() {
    byte r;
    move(CUR, NEW, r)
}

proctype doctor() {
    byte r, a, b;
    a = nm[CUR];                        /* lstat cur/X */
    b = nm[NEW];                        /* lstat new/X */
    if
    :: a != 0 && a == b -> unlink(NEW)  /* "half-claim" */
    :: a != 0 && a != b ->
        if
        :: true -> move(CUR, NEW, r)    /* lease expired */
        :: true                         /* not yet */
        fi
    :: else
    fi
}

/* (a) never deleted: the message keeps at least one name */
#define NAMED (nm[NEW] == 1 || nm[CUR] == 1 || nm[DONE] == 1 || dead[1] > 0)

active proctype monitor() {
end:
    atomic { ready && !NAMED -> assert(NAMED) }
}

init {
    atomic {
        nm[NEW] = 1;                    /* X delivered, unread */
        ready = true;
        run claimer(); run claimer(); run expirer(); run doctor()
    }
}
