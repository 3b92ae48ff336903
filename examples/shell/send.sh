#!/bin/sh
# Send one message into an agentmailbox root with POSIX tools only (docs/PROTOCOL.md).
#
#   sh examples/shell/send.sh ROOT FROM TO[,TO...] SUBJECT [BODY]
#
# ROOT is a project folder holding .mailbox/, or the .mailbox/ folder itself.
# BODY is sent as a JSON string; without BODY (or with "-") it is read from stdin,
# minus its last newline. Prints the message id. Exit codes follow the mailbox
# command: 2 usage, 4 unknown root or agent, 5 invalid name, 7 over the size limit.
set -eu

die() { printf 'send.sh: %s\n' "$2" >&2; exit "$1"; }

[ $# -ge 4 ] && [ $# -le 5 ] || die 2 "usage: send.sh ROOT FROM TO[,TO...] SUBJECT [BODY]"
root=$1 from=$2 to=$3 subject=$4

if [ -f "$root/.mailbox/mailbox.json" ]; then root=$root/.mailbox; fi
[ -f "$root/mailbox.json" ] || die 4 "no mailbox root at $1"
# Protocol versions 1 and 2 only (PROTOCOL.md §4): a newer root is refused, not misread.
grep -Eq '"format": *[12]([^0-9.eE]|$)' "$root/mailbox.json" ||
    die 5 "$root/mailbox.json has a format this script does not read (it reads 1 and 2)"

# An agent name: 1-64 of a-z 0-9 _ -, starting with a letter or digit; not all/everyone.
check_agent() {
    case $1 in
        '' | [!a-z0-9]* | *[!a-z0-9_-]* | all | everyone) die 5 "invalid agent name '$1'" ;;
    esac
    [ ${#1} -le 64 ] || die 5 "invalid agent name '$1'"
    [ -f "$root/agents/$1/agent.json" ] || die 4 "no agent named '$1'"
}

# A JSON string of stdin: lines joined by \n; quotes, backslashes and control bytes escaped.
json_string() {
    LC_ALL=C awk '
        BEGIN { ORS = ""; for (i = 1; i < 32; i++) esc[sprintf("%c", i)] = sprintf("\\u%04x", i)
                esc["\t"] = "\\t"; esc["\r"] = "\\r"; esc["\""] = "\\\""; esc["\\"] = "\\\\"
                print "\"" }
        NR > 1 { print "\\n" }
        { for (i = 1; i <= length($0); i++) { c = substr($0, i, 1)
              print ((c in esc) ? esc[c] : c) } }
        END { print "\"" }'
}

# <20-digit nanosecond stamp>-<16 hex>; GNU date gives nanoseconds, others seconds.
new_id() {
    ns=$(date +%s%N)
    case $ns in *[!0-9]*) ns=$(date +%s)000000000 ;; esac
    while [ ${#ns} -lt 20 ]; do ns=0$ns; done
    rand=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    printf '%s-%s\n' "$ns" "$rand"
}

check_agent "$from"
recipients=$(printf '%s\n' "$to" | tr ',' ' ')
to_json=
for r in $recipients; do
    check_agent "$r"
    to_json=${to_json:+$to_json,}\"$r\"
done
[ -n "$to_json" ] || die 5 "no recipients"

if [ $# -eq 5 ] && [ "$5" != - ]; then
    body=$(printf '%s' "$5" | json_string)
else
    body=$(json_string)
fi
subject=$(printf '%s' "$subject" | json_string)
id=$(new_id)
ts=$(date -u +%Y-%m-%dT%H:%M:%SZ)
message=$(printf '{"v":1,"id":"%s","ts":"%s","from":"%s","to":[%s],"subject":%s,"kind":"message","thread":"%s","reply_to":null,"priority":"normal","expires_at":null,"receipt":false,"headers":{},"body":%s}' \
    "$id" "$ts" "$from" "$to_json" "$subject" "$id" "$body")

limit=$(sed -n 's/^ *"max_message_bytes": *\([0-9]*\).*/\1/p' "$root/mailbox.json")
size=$(printf '%s\n' "$message" | wc -c | tr -d ' ')
[ "$size" -le "${limit:-1048576}" ] || die 7 "message is $size bytes, over the limit of $limit bytes"

# Files as private as the root's mode asks; fsync "never" skips the syncs.
if grep -q '"mode": *"group"' "$root/mailbox.json"; then umask 007; else umask 077; fi
sync_policy() { grep -q '"fsync": *"never"' "$root/mailbox.json" || sync; }

set -C  # '>' creates exclusively: it never overwrites
for r in $recipients; do
    inbox=$root/agents/$r/inbox
    staged=$inbox/tmp/$id.$$.sh          # the staging name starts with the id
    printf '%s\n' "$message" > "$staged"
    sync_policy
    ln -P "$staged" "$inbox/new/$id.json"   # the commit point: now it is delivered
    rm -f "$staged"
    sync_policy
done
printf '%s\n' "$id"
