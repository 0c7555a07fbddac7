#!/bin/sh
#
# ctl_tls_smoke.sh - mstore-ctl --tls --cafile against a private mstored
# whose TCP listener speaks TLS (--tls-cert/--tls-key, throwaway
# certificates from tls-certs.sh) and which requires a shared key:
# ping, put and cat through TLS by IP address and by name; the key is
# still required; an untrusted CA, a certificate for another name, a
# missing CA file, plaintext against the TLS port and --tls on a Unix
# socket all fail with a message saying so; the Unix socket stays
# plaintext. Every command runs under timeout(1).

. "${srcdir:-$(dirname "$0")/..}/tests/smoke_lib.sh"

certs=${srcdir:-$(dirname "$0")/..}/tests/tls-certs.sh
mkdir "$tmp/tls" "$tmp/data" || exit 99
sh "$certs" "$tmp/tls" || exit 99
echo "smoke-test-key-$$" >"$tmp/key" && chmod 600 "$tmp/key" || exit 99

# start NAME: mstored with the certificate NAME on 127.0.0.1:0 and a Unix
# socket; sets $port from its "started" line.
start()
{
	"$MSTORED" --data "$tmp/data" --foreground \
	    --listen "unix:$tmp/sock" --listen 127.0.0.1:0 \
	    --tls-cert "$tmp/tls/$1.pem" --tls-key "$tmp/tls/$1.key" \
	    --config "$tmp/mstored.conf" >"$tmp/mstored.log" 2>&1 &
	smoke_pid=$!
	i=0
	until grep -q 'started:' "$tmp/mstored.log"; do
		if ! kill -0 "$smoke_pid" 2>/dev/null || [ $i -ge 100 ]; then
			echo "$smoke_me: mstored did not start; its log:" >&2
			sed 's/^/    /' "$tmp/mstored.log" >&2
			exit 99
		fi
		sleep 0.1
		i=$((i + 1))
	done
	grep -q 'TLS on TCP' "$tmp/mstored.log" ||
	    fail "started line does not say TLS: $(grep started: "$tmp/mstored.log")"
	port=$(sed -n 's/.*listening on .*127\.0\.0\.1:\([0-9]*\).*/\1/p' \
	    "$tmp/mstored.log")
	[ -n "$port" ] || { echo "$smoke_me: no port in the log" >&2; exit 99; }
}

stop()
{
	kill "$smoke_pid" && wait "$smoke_pid"
	smoke_pid=
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

# err_has TEXT: the last command's stderr says TEXT.
err_has()
{
	grep -q "$1" "$tmp/err" || fail "stderr lacks '$1': $(cat "$tmp/err")"
}

ctl()
{
	timeout 60 "$MSTORE_CTL" "$@"
}

echo "key_file = $tmp/key" >"$tmp/mstored.conf"
start server
k="-k $tmp/key"
tls="--tls --cafile $tmp/tls/ca.pem"

expect 0 "ping over TLS by IP" ctl -s "127.0.0.1:$port" $k $tls ping &&
    { grep -q 'time=[0-9.]* ms' "$tmp/out" || fail "ping output: $(cat "$tmp/out")"; }
expect 0 "ping over TLS by name" ctl -s "localhost:$port" $k $tls ping
expect 0 "mkdir over TLS" ctl -s "127.0.0.1:$port" $k $tls mkdir -p t.example/u
head -c 1048576 /dev/urandom >"$tmp/blob"
expect 0 "put over TLS" ctl -s "127.0.0.1:$port" $k $tls put t.example/u/blob \
    <"$tmp/blob"
expect 0 "cat over TLS" ctl -s "127.0.0.1:$port" $k $tls cat t.example/u/blob &&
    { cmp -s "$tmp/out" "$tmp/blob" || fail "cat returned other bytes than put"; }
expect 1 "TLS without the key" ctl -s "127.0.0.1:$port" $tls ping &&
    err_has 'authentication failed'
expect 1 "untrusted CA" ctl -s "127.0.0.1:$port" $k --tls \
    --cafile "$tmp/tls/other-ca.pem" ping && err_has 'certificate is not trusted'
expect 1 "missing CA file" ctl -s "127.0.0.1:$port" $k --tls \
    --cafile "$tmp/tls/none.pem" ping && err_has 'CA file .*none.pem: No such file'
expect 1 "plaintext on the TLS port" ctl -s "127.0.0.1:$port" $k ping
expect 0 "the Unix socket stays plaintext" ctl -s "unix:$tmp/sock" $k ping
expect 2 "--tls on a Unix socket" ctl -s "unix:$tmp/sock" $k $tls ping &&
    err_has 'Unix sockets are plaintext'
expect 2 "--tls without --cafile" ctl -s "127.0.0.1:$port" $k --tls ping &&
    err_has 'needs --cafile'
expect 0 "the server still serves" ctl -s "127.0.0.1:$port" $k $tls ping
stop

start wrongname
expect 1 "certificate for another name, by IP" ctl -s "127.0.0.1:$port" \
    $k $tls ping && err_has 'not for this host'
expect 1 "certificate for another name, by name" ctl -s "localhost:$port" \
    $k $tls ping && err_has 'not for this host'

smoke_end
