#!/bin/sh
#
# check_units.sh - the systemd units in systemd/ against what mstored and
# mount.mstore really do.
#
# - mstored.service and mstored@.service, made from their .in with this
#   build's mstored: Type=exec with --foreground (mstored does not send
#   READY=1; when storeserver/main.c starts to, this fails so that the
#   units move to Type=notify), a dedicated User=, the hardening the
#   README promises, and "systemd-analyze verify" clean (instance "b").
# - The command line of each unit, with a private configuration file in
#   place of /etc/mstore/NAME.conf, starts an mstored that answers
#   mstore-ctl ping, reopens its log on SIGHUP (ExecReload) and exits 0 on
#   SIGTERM; as the user nobody with no_new_privs when run as root.
# - srv-mail.mount: Type=mstore, _netdev, and a name that is its Where=
#   escaped as systemd requires; "systemd-analyze verify" clean.
# Without systemd-analyze the verify step is reported as not run, and the
# rest still checked. Exit status: 0 ok, 1 a problem, 99 setup error.

LC_ALL=C
export LC_ALL
me=check_units
if [ -z "${srcdir:-}" ]; then
	srcdir=$(dirname "$0")/..
fi
builddir=${abs_top_builddir:-.}
mstored=$builddir/storeserver/mstored
ctl=$builddir/tools/mstore-ctl
for f in "$srcdir/systemd/mstored.service.in" \
    "$srcdir/systemd/mstored@.service.in" "$srcdir/systemd/srv-mail.mount" \
    "$srcdir/storeserver/main.c"; do
	[ -r "$f" ] || { echo "$me: cannot read $f" >&2; exit 99; }
done
for f in "$mstored" "$ctl"; do
	[ -x "$f" ] || { echo "$me: $f missing: build first" >&2; exit 99; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check_units.XXXXXX") || exit 99
chmod 755 "$tmp"
pid=""
cleanup()
{
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup 0
trap 'exit 99' HUP INT TERM
: >"$tmp/problems"
problem()
{
	echo "$*" >>"$tmp/problems"
}

# The units as make install writes them, with this build's mstored.
sbindir=$(cd "$builddir/storeserver" && pwd)
mkdir "$tmp/units"
for u in mstored.service mstored@.service; do
	sed -e "s|@sbindir[@]|$sbindir|g" -e 's|@sysconfdir[@]|/etc|g' \
	    "$srcdir/systemd/$u.in" >"$tmp/units/$u"
done
cp "$tmp/units/mstored@.service" "$tmp/units/mstored@b.service"
cp "$srcdir/systemd/srv-mail.mount" "$tmp/units/"

# key VALUE present in UNIT's non-comment lines.
need()
{
	grep -qx "$2" "$tmp/units/$1" || problem "$me: $1: no line '$2'"
}

if grep -q 'sd_notify\|NOTIFY_SOCKET' "$srcdir/storeserver/main.c"; then
	problem "$me: storeserver/main.c now notifies systemd: make the" \
	    "units Type=notify"
fi
for u in mstored.service mstored@b.service; do
	for l in Type=exec User=mstore Group=mstore NoNewPrivileges=yes \
	    ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
	    PrivateDevices=yes CapabilityBoundingSet= \
	    RestartPreventExitStatus=2 'ExecReload=/bin/kill -HUP $MAINPID'; do
		need "$u" "$l"
	done
	grep -q '^ExecStart=.* --foreground' "$tmp/units/$u" ||
	    problem "$me: $u: ExecStart without --foreground (mstored would" \
	    "fork and Type=exec would lose it)"
	grep -q '^ExecStart=.* --user' "$tmp/units/$u" &&
	    problem "$me: $u: --user with User= (refused when not root)"
done
need mstored.service ReadWritePaths=/var/lib/mstore
need mstored.service StateDirectory=mstore
need mstored@b.service 'ReadWritePaths=/var/lib/mstore-%i'
need mstored@b.service 'StateDirectory=mstore-%i'
need srv-mail.mount Type=mstore
grep -q '^Options=\(.*,\)\?_netdev\(,.*\)\?$' "$tmp/units/srv-mail.mount" ||
    problem "$me: srv-mail.mount: Options= without _netdev"
where=$(sed -n 's/^Where=//p' "$tmp/units/srv-mail.mount")
if command -v systemd-escape >/dev/null 2>&1; then
	name=$(systemd-escape -p --suffix=mount "$where")
	[ "$name" = srv-mail.mount ] ||
	    problem "$me: srv-mail.mount: Where=$where needs the name $name"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
	(cd "$tmp/units" && systemd-analyze verify --man=no \
	    ./mstored.service ./mstored@b.service ./srv-mail.mount) \
	    >"$tmp/verify.out" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ] || [ -s "$tmp/verify.out" ]; then
		problem "$me: systemd-analyze verify (exit $rc) says:"
		sed 's/^/    /' "$tmp/verify.out" >>"$tmp/problems"
	fi
	verified="systemd-analyze verify clean"
else
	verified="systemd-analyze not found: verify not run"
fi

# Each unit's ExecStart, with a private config, as the service runs it.
run_as=""
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1 &&
    id nobody >/dev/null 2>&1; then
	run_as="setpriv --reuid=nobody --regid=$(id -g nobody) --clear-groups --no-new-privs"
fi
for u in mstored.service mstored@b.service; do
	d=$tmp/run-$u
	mkdir -p "$d/data"
	printf 'data = %s/data\nlisten = unix:%s/sock\n' "$d" "$d" >"$d/conf"
	[ -n "$run_as" ] && chown -R nobody "$d"
	cmd=$(sed -n 's/^ExecStart=//p' "$tmp/units/$u" |
	    sed -e 's/%i/b/g' -e "s|--config [^ ]*|--config $d/conf|")
	case " $cmd " in
	*" --foreground "*) ;;
	*) continue ;;	# it would detach from us: reported above
	esac
	# shellcheck disable=SC2086
	$run_as $cmd 2>"$d/log" &
	pid=$!
	i=0
	until "$ctl" -s "unix:$d/sock" -t 2 ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -ge 100 ] || ! kill -0 "$pid" 2>/dev/null; then
			problem "$me: $u: '$cmd' did not answer ping:"
			sed 's/^/    /' "$d/log" >>"$tmp/problems"
			break
		fi
		sleep 0.1
	done
	kill -HUP "$pid" 2>/dev/null
	sleep 0.2
	kill -TERM "$pid" 2>/dev/null
	wait "$pid"
	rc=$?
	pid=""
	[ "$rc" -eq 0 ] || problem "$me: $u: exit $rc after SIGTERM"
	grep -q 'SIGHUP: log reopened' "$d/log" ||
	    problem "$me: $u: no 'SIGHUP: log reopened' in its log"
done

if [ -s "$tmp/problems" ]; then
	cat "$tmp/problems" >&2
	echo "$me: FAIL: $(grep -c '^[^ ]' "$tmp/problems") problem(s)" >&2
	exit 1
fi
echo "$me: OK: units hardened, Type=exec with --foreground, each ExecStart" \
    "serves${run_as:+ as nobody}; $verified"
exit 0
