#!/bin/sh
#
# ctl_smoke.sh - mstore-ctl against a private mstored that requires a
# shared key (-k): no key or a wrong one fails; ping, status, stats,
# mkdir, put and cat round trip (binary-safe, larger than one frame), ls,
# stat, statfs, rm, scrub result=clean, checkpoint; a failing operation
# exits 1 with the op and strerror; bad usage exits 2.
# Then every command again with --json: each output is parsed by Python's
# json module and its fields compared with what was done (du and quota
# after delivering known messages with mstore-bench, names with control
# characters and broken UTF-8, cat's base64 against the bytes put), the
# error object of a failure, progress on stderr, and the mailbox count
# going down when a mailbox is emptied.
# Every command runs under timeout(1), so a hang fails instead of blocking.

. "${srcdir:-$(dirname "$0")/..}/tests/smoke_lib.sh"

smoke_start key

ctl()
{
	timeout 60 "$MSTORE_CTL" -s "$addr" -k "$tmp/key" "$@"
}

# expect STATUS DESCRIPTION COMMAND...: run, compare the exit status.
expect()
{
	want=$1
	what=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" -ne "$want" ]; then
		fail "$what: exit $got, want $want; stderr: $(cat "$tmp/err")"
		return 1
	fi
	return 0
}

expect 1 "ping without the key" timeout 60 "$MSTORE_CTL" -s "$addr" ping &&
    { grep -q 'authentication failed' "$tmp/err" ||
    fail "no-key message: $(cat "$tmp/err")"; }
echo wrong-key >"$tmp/wrong"
expect 1 "ping with a wrong key" timeout 60 "$MSTORE_CTL" -s "$addr" \
    -k "$tmp/wrong" ping
expect 0 "ping" ctl ping &&
    { grep -q 'time=[0-9.]* ms' "$tmp/out" || fail "ping output: $(cat "$tmp/out")"; }
expect 0 "status" ctl status &&
    { grep -q '^max_frame=[0-9]' "$tmp/out" &&
    grep -q '^features=auth' "$tmp/out" ||
    fail "status output: $(cat "$tmp/out")"; }
expect 0 "stats" ctl stats &&
    { grep -q '^batches=[0-9]' "$tmp/out" || fail "stats output: $(cat "$tmp/out")"; }

expect 0 "mkdir -p" ctl mkdir -p dom.example/al/new
expect 1 "mkdir of an existing directory" ctl mkdir dom.example &&
    { grep -q 'MKDIR dom.example: File exists' "$tmp/err" ||
    fail "mkdir error message: $(cat "$tmp/err")"; }

# Binary data, 2.5 MiB: several GET and PUT frames.
head -c 2621440 /dev/urandom >"$tmp/blob"
expect 0 "put" ctl put dom.example/al/blob <"$tmp/blob"
expect 0 "cat" ctl cat /dom.example/al/blob &&
    { cmp -s "$tmp/out" "$tmp/blob" || fail "cat returned other bytes than put"; }
printf 'replaced\n' >"$tmp/small"
expect 0 "put replacing" ctl put dom.example/al/blob <"$tmp/small"
expect 0 "cat after replace" ctl cat dom.example/al/blob &&
    { cmp -s "$tmp/out" "$tmp/small" || fail "cat after replace: $(cat "$tmp/out")"; }
expect 1 "put --excl over an existing file" ctl put --excl dom.example/al/blob <"$tmp/small"
: >"$tmp/empty"
expect 0 "put of an empty file" ctl put dom.example/al/empty <"$tmp/empty"
expect 0 "cat of an empty file" ctl cat dom.example/al/empty &&
    { [ -s "$tmp/out" ] && fail "cat of an empty file printed bytes"; }

expect 0 "ls" ctl ls dom.example/al &&
    { grep -q ' blob$' "$tmp/out" && grep -q '^d.* new$' "$tmp/out" ||
    fail "ls output: $(cat "$tmp/out")"; }
expect 0 "stat" ctl stat dom.example/al/blob &&
    { grep -q '^size=9$' "$tmp/out" && grep -q '^type=file$' "$tmp/out" ||
    fail "stat output: $(cat "$tmp/out")"; }
expect 0 "statfs" ctl statfs dom.example/al &&
    { grep -q '^name_max=255$' "$tmp/out" || fail "statfs output: $(cat "$tmp/out")"; }

expect 1 "cat of a missing file" ctl cat dom.example/al/nope &&
    { grep -q 'GET dom.example/al/nope: No such file or directory' "$tmp/err" ||
    fail "cat error message: $(cat "$tmp/err")"; }
expect 0 "rm of a file" ctl rm dom.example/al/blob
expect 1 "stat after rm" ctl stat dom.example/al/blob
expect 1 "rm of a non-empty directory" ctl rm dom.example/al
expect 0 "rm of an empty directory" ctl rm dom.example/al/new

expect 0 "scrub" ctl scrub &&
    { grep -q '^result=clean$' "$tmp/out" || fail "scrub output: $(cat "$tmp/out")"; }
expect 0 "checkpoint" ctl checkpoint
expect 0 "compact" ctl compact

# --- --json on every command ---

# jcheck WHAT PYTHON: parse $tmp/out as JSON (as d) and run the asserts
# in PYTHON; env variables are in E.
jcheck()
{
	what=$1
	shift
	if ! python3 - "$tmp/out" "$1" >"$tmp/jerr" 2>&1 <<'PY'
import json, os, sys
text = open(sys.argv[1], encoding="ascii").read()
assert text.endswith("\n") and text.count("\n") == 1, "not one line"
d = json.loads(text)
E = os.environ
exec(sys.argv[2])
PY
	then
		fail "$what --json: $(tail -n 3 "$tmp/jerr"); output: $(head -c 600 "$tmp/out")"
	fi
}

export addr tmp
expect 0 "ping --json" ctl --json ping &&
    jcheck ping 'assert d["address"] == E["addr"]; assert d["time_ms"] >= 0
assert d["server"].startswith("mstored ")'
expect 0 "status --json" ctl --json status &&
    jcheck status 'assert "auth" in d["features"], d
assert d["max_frame"] > 0 and d["max_body"] > 0 and d["version"] >= 1
assert len(d["server_id"]) == 16'

# Six messages of 1000 bytes, three in each of two mailboxes.
"$MSTORE_BENCH" -q -k "$tmp/key" -w 1 -s 1000 -m 2 -n 6 --keep \
    "mstore://$addr" >"$tmp/bench.out" 2>&1 ||
    fail "mstore-bench: $(cat "$tmp/bench.out")"
expect 0 "ls --json /" ctl --json ls / &&
    jcheck "ls /" 'names = [e["name"] for e in d["entries"]]
b = [n for n in names if n.startswith("bench-")]
assert len(b) == 1, names
open(E["tmp"] + "/base", "w").write(b[0])'
base=$(cat "$tmp/base" 2>/dev/null)
export base
expect 0 "stats --json" ctl --json stats &&
    jcheck stats 'assert d["messages"] == 6 and d["message_bytes"] == 6000, d
assert d["mailboxes"] == 2 and d["engine"] == "local"
assert d["scrub_running"] == 0 and isinstance(d["batches"], int)'
expect 0 "du --json" ctl --json du "$base" &&
    jcheck du 'b = E["base"]
assert d["path"] == b
assert [m["mailbox"] for m in d["mailboxes"]] == [b + "/user0", b + "/user1"]
assert all(m["messages"] == 3 and m["bytes"] == 3000 for m in d["mailboxes"])
assert d["total"] == {"mailboxes": 2, "messages": 6, "bytes": 6000}, d'
expect 0 "du" ctl du "$base" &&
    { grep -q "^ *3 *3000  $base/user1\$" "$tmp/out" &&
    grep -q '^ *6 *6000  total (2 mailboxes)$' "$tmp/out" ||
    fail "du output: $(cat "$tmp/out")"; }
expect 0 "quota get --json" ctl --json quota get "$base/user0" &&
    jcheck "quota get" 'assert d == {"mailbox": E["base"] + "/user0",
    "quota_bytes": 0, "used_bytes": 3000, "quota_msgs": 0,
    "used_msgs": 3}, d'
expect 0 "quota set --json" ctl --json quota set "$base/user0" 10K 4 &&
    jcheck "quota set" 'assert d["quota_bytes"] == 10240, d
assert d["quota_msgs"] == 4 and d["used_msgs"] == 3'
expect 0 "quota get after set" ctl quota get "/$base/user0/" &&
    { grep -q '^quota_bytes=10240$' "$tmp/out" &&
    grep -q '^quota_msgs=4$' "$tmp/out" ||
    fail "quota get output: $(cat "$tmp/out")"; }
expect 2 "quota set with a bad size" ctl quota set "$base/user0" lots 4
expect 2 "quota of the root" ctl quota get /
expect 0 "statfs --json" ctl --json statfs "$base/user0" &&
    jcheck statfs 'assert d["used_msgs"] == 3 and d["used_bytes"] == 3000
assert d["quota_msgs"] == 4 and d["name_max"] == 255
assert d["bytes_total"] >= d["bytes_free"] > 0'

# Emptying a mailbox takes it off the count.
for m in $(ctl ls "$base/user1/new" | awk '{print $NF}'); do
	ctl rm "$base/user1/new/$m" || fail "rm of message $m"
done
expect 0 "stats --json after emptying a mailbox" ctl --json stats &&
    jcheck "stats after rm" 'assert d["mailboxes"] == 1, d
assert d["messages"] == 3, d'

# Names with a control character, UTF-8 and a byte that is not UTF-8.
expect 0 "mkdir --json" ctl --json mkdir -p j/sub &&
    jcheck mkdir 'assert d == {"path": "j/sub", "created": ["j", "j/sub"]}, d'
expect 0 "mkdir -p --json of existing" ctl --json mkdir -p j/sub &&
    jcheck "mkdir again" 'assert d["created"] == [], d'
printf 'a\001\377"\\\n' >"$tmp/odd"
odd=$(printf 'caf\303\251\tx\377')
expect 0 "put --json" ctl --json put "j/$odd" <"$tmp/odd" &&
    jcheck put 'assert d["path"] == "j/caf\u00e9\tx\ufffd", d
assert d["size"] == 6 and d["type"] == "file" and d["mode"] == 0o644
assert len(d["checksum"]) == 16'
expect 0 "ls --json" ctl --json ls j &&
    jcheck ls 'n = sorted(e["name"] for e in d["entries"])
assert n == ["caf\u00e9\tx\ufffd", "sub"], n
s = [e for e in d["entries"] if e["name"] == "sub"][0]
assert s["type"] == "directory" and s["id"] > 0 and s["mtime_ns"] > 10**18'
expect 0 "stat --json" ctl --json stat "j/$odd" &&
    jcheck stat 'assert d["size"] == 6 and d["nlink"] == 1 and d["type"] == "file"'
expect 0 "cat --json" ctl --json cat "j/$odd" &&
    jcheck cat 'import base64
assert base64.b64decode(d["content_base64"]) == open(E["tmp"] + "/odd", "rb").read()
assert d["size"] == 6'
expect 0 "rm --json" ctl --json rm "j/$odd" &&
    jcheck rm 'assert d["removed"] == "file", d'
expect 0 "rm --json of a directory" ctl --json rm j/sub &&
    jcheck "rm dir" 'assert d == {"path": "j/sub", "removed": "directory"}, d'

# Failures: the error object on stdout, the message on stderr.
expect 1 "cat --json of a missing file" ctl --json cat j/nope &&
    jcheck "cat error" 'e = d["error"]
assert e["op"] == "GET" and e["errno_name"] == "ENOENT" and e["errno"] == 2
assert e["exit_status"] == 1 and "No such file" in e["message"]' &&
    { grep -q 'GET j/nope: No such file or directory' "$tmp/err" ||
    fail "cat --json error on stderr: $(cat "$tmp/err")"; }
expect 2 "usage error --json" ctl --json stat a/../b &&
    jcheck "usage error" 'e = d["error"]
assert e["exit_status"] == 2 and e["op"] is None and "bad path" in e["message"]'
expect 1 "unreachable server --json" timeout 60 "$MSTORE_CTL" --json -t 2 \
    -s "unix:$tmp/no-such-socket" ping &&
    jcheck "connect error" 'assert d["error"]["op"] == "connect", d'

# Maintenance, with progress on stderr.
expect 0 "scrub --json --progress" ctl --json --progress scrub &&
    jcheck scrub 'assert d["result"] == "clean" and d["findings"] == []
assert d["bad_records"] == 0 and d["bad_bodies"] == 0 and d["bodies"] >= 6' &&
    { grep -q 'scrub: done, 100% ([0-9]* of [0-9]* log bytes checked)' \
    "$tmp/err" || fail "scrub progress: $(cat "$tmp/err")"; }
expect 0 "checkpoint --json" ctl --json checkpoint &&
    jcheck checkpoint 'assert d == {"checkpoint": "ok"}, d'
expect 0 "compact --wait --json --progress" ctl --json --progress compact --wait &&
    jcheck compact 'assert d["compact"] == "started" and d["waited"] is True
assert d["compact_pass"] >= 1 and d["compactions"] >= 0' &&
    { grep -q 'compact: pass [0-9]* done' "$tmp/err" ||
    fail "compact progress: $(cat "$tmp/err")"; }
expect 0 "compact --json" ctl --json compact &&
    jcheck "compact no wait" 'assert d["waited"] is False and "compactions" not in d'
expect 2 "compact with a bad argument" ctl compact --now

# cluster status: a report, also when a server is down (exit 1).
expect 0 "cluster status --json" ctl --json cluster status --servers "$addr" &&
    jcheck cluster 's = d["servers"]
assert len(s) == 1 and s[0]["address"] == E["addr"] and s[0]["state"] == "up"
assert s[0]["ping_ms"] >= 0 and s[0]["error"] is None and d["healthy"] is True'
expect 1 "cluster status --json with a server down" ctl --json cluster status \
    --servers "$addr,unix:$tmp/no-such-socket" &&
    jcheck "cluster down" 's = d["servers"]
assert [x["state"] for x in s] == ["up", "down"] and d["healthy"] is False
assert s[1]["ping_ms"] is None and "No such socket" in s[1]["error"]'

# Usage errors: exit 2 without touching the server.
expect 2 "unknown command" ctl frobnicate
expect 2 "missing argument" ctl cat
expect 2 "too many arguments" ctl stat a b
expect 2 "bad timeout" ctl -t zero ping
expect 2 "bad server address" timeout 60 "$MSTORE_CTL" -s nonsense ping
expect 2 "bad path" ctl stat a/../b
expect 2 "no command" ctl
expect 0 "--help" timeout 60 "$MSTORE_CTL" --help
# A server that is not there: the operation fails (1), not the usage.
expect 1 "unreachable server" timeout 60 "$MSTORE_CTL" -t 2 \
    -s "unix:$tmp/no-such-socket" ping

smoke_end
