#!/bin/sh
# Claim the oldest unread message of an agent, print it, and mark it done (docs/PROTOCOL.md).
#
#   sh examples/shell/read.sh ROOT AGENT
#
# Prints the message file (one JSON object) on stdout. Exit 3 if there is no unread
# mail, 4 if the root or agent is unknown. It hands out only a regular file within the
# size limit whose id is not done already (PROTOCOL.md §0.3), and leaves any other in
# cur/ for recovery. It does not validate the JSON or check expires_at: whoever reads
# its output does (§0.3), or uses the library.
set -eu

die() { printf 'read.sh: %s\n' "$2" >&2; exit "$1"; }

[ $# -eq 2 ] || die 2 "usage: read.sh ROOT AGENT"
root=$1 agent=$2
if [ -f "$root/.mailbox/mailbox.json" ]; then root=$root/.mailbox; fi
[ -f "$root/mailbox.json" ] || die 4 "no mailbox root at $1"
# Protocol versions 1 and 2 only (PROTOCOL.md §4): a newer root is refused, not misread.
grep -Eq '"format": *[12]([^0-9.eE]|$)' "$root/mailbox.json" ||
    die 5 "$root/mailbox.json has a format this script does not read (it reads 1 and 2)"
case $agent in '' | [!a-z0-9]* | *[!a-z0-9_-]*) die 5 "invalid agent name '$agent'" ;; esac
[ -f "$root/agents/$agent/agent.json" ] || die 4 "no agent named '$agent'"
inbox=$root/agents/$agent/inbox

d='[0-9]' h='[0-9a-f]'
message_file="$d$d$d$d$d$d$d$d$d$d$d$d$d$d$d$d$d$d$d$d-$h$h$h$h$h$h$h$h$h$h$h$h$h$h$h$h.json"

# UTC date (YYYY-MM-DD) of an id's stamp: the done/ shard it belongs in.
day_of() {
    printf '%s\n' "$1" | awk '{
        z = int(substr($0, 1, 11) / 86400) + 719468   # days since 0000-03-01
        era = int(z / 146097); doe = z - era * 146097
        yoe = int((doe - int(doe / 1460) + int(doe / 36524) - int(doe / 146096)) / 365)
        doy = doe - (365 * yoe + int(yoe / 4) - int(yoe / 100))
        mp = int((5 * doy + 2) / 153); day = doy - int((153 * mp + 2) / 5) + 1
        month = mp < 10 ? mp + 3 : mp - 9; year = yoe + era * 400 + (month <= 2)
        printf "%04d-%02d-%02d\n", year, month, day }'
}

# Nanoseconds since the epoch; GNU date gives nanoseconds, others seconds.
now_ns() {
    ns=$(date +%s%N)
    case $ns in *[!0-9]*) ns=$(date +%s)000000000 ;; esac
    printf '%s\n' "$ns"
}

# A dead-letter id has the shape of a message id: <20-digit stamp>-<16 hex>.
new_id() {
    stamp=$(now_ns)
    while [ ${#stamp} -lt 20 ]; do stamp=0$stamp; done
    printf '%s-%s\n' "$stamp" "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
}

# Move a claimed file $1 into dead/ with reason $2 (recorded under name $3 if given):
# the reason first, then the file.
quarantine() {
    dead=$root/dead dead_id=$(new_id)
    printf '{"id":"%s","reason":"%s","origin":"agents/%s/inbox/cur","name":"%s","at":"%s","agent":"%s"}\n' \
        "$dead_id" "$2" "$agent" "${3:-${1##*/}}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$agent" \
        > "$dead/.$dead_id.tmp"
    ln -P "$dead/.$dead_id.tmp" "$dead/$dead_id.reason.json"
    rm -f "$dead/.$dead_id.tmp"
    mv "$1" "$dead/$dead_id.msg"
}

# One line in the journal (a record for `mailbox status`, not the state).
journal() {
    printf '{"t":%s,"ev":"%s","pid":%s,"agent":"%s","id":"%s","epoch":null}\n' \
        "$(now_ns)" "$1" "$$" "$agent" "$2" >> "$root/journal/$(date -u +%Y-%m-%d).jsonl"
}

if grep -q '"mode": *"group"' "$root/mailbox.json"; then umask 007; else umask 077; fi
limit=$(sed -n 's/^.*"max_message_bytes": *\([0-9]*\).*$/\1/p' "$root/mailbox.json")
limit=${limit:-1048576}

# Move our hold name $1 to $2 without replacing (GNU mv -n: renameat2 RENAME_NOREPLACE).
# True if it moved; the hold is ours alone, so its absence is the proof.
settle() { mv -n "$1" "$2" 2>/dev/null || :; [ ! -e "$1" ] && [ ! -h "$1" ]; }

for name in $(ls "$inbox/new" | LC_ALL=C sort); do
    case $name in $message_file) ;; *) continue ;; esac   # foreign names: doctor's job
    [ -h "$inbox/new/$name" ] && continue                  # never claim a symlink
    id=${name%.json}
    hold=$inbox/cur/.hold.$id.$$.$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
    mv "$inbox/new/$name" "$hold" 2>/dev/null || continue  # someone else has it
    if ! settle "$hold" "$inbox/cur/$name"; then           # cur/ holds another copy
        settle "$hold" "$inbox/new/$name" || quarantine "$hold" "duplicate delivery of a message already unread" "$name"
        continue
    fi
    [ -f "$inbox/cur/$name" ] && [ ! -h "$inbox/cur/$name" ] || continue  # left for doctor
    [ "$(wc -c < "$inbox/cur/$name")" -le "$limit" ] || continue           # likewise
    day=$(day_of "$id")
    if [ -e "$inbox/done/$day/$name" ]; then
        mv "$inbox/cur/$name" "$hold"
        quarantine "$hold" "duplicate delivery of a message already done" "$name"
        continue
    fi
    touch "$inbox/cur/$name"                                # the lease starts now
    journal claim "$id"
    cat "$inbox/cur/$name"
    mkdir -p "$inbox/done/$day"
    mv "$inbox/cur/$name" "$hold"                           # ours alone while it settles
    settle "$hold" "$inbox/done/$day/$name" ||
        quarantine "$hold" "duplicate delivery of a message already done" "$name"
    journal done "$id"                                      # the DONE marker is the file's place
    exit 0
done
printf 'read.sh: no unread mail for %s\n' "$agent" >&2
exit 3
