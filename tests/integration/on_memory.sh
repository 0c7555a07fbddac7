#!/bin/sh
#
# on_memory.sh - the protocol-level and mount-level suites with every
# store on mstored --backend memory (on_backend.py memory): the hostile
# client catalogue (tests/hostile_client.py), test_mount.py,
# test_shared.py, test_locks.py, test_perms.py, test_layouts.py and
# test_posix.py must hold on that back-end as they do on local (the one
# case that needs a store to keep its data across a restart is printed as
# SKIP, see mstlib.NOT_ON_BACKEND). Fails when any suite fails; skipped
# (77) only when all were. Each suite runs under timeout(1), so a hang
# fails instead of blocking.
here=$(cd "$(dirname "$0")" && pwd)
rc=0
ran=0
for t in ../hostile_client.py test_mount.py test_shared.py test_locks.py \
    test_perms.py test_layouts.py test_posix.py; do
	timeout 300 python3 "$here/on_backend.py" memory "$here/$t"
	st=$?
	case $st in
	0) ran=1 ;;
	77) ;;
	*) echo "on_memory: $t failed (exit $st)"; rc=1 ;;
	esac
done
if [ "$rc" -eq 0 ] && [ "$ran" -eq 0 ]; then
	exit 77
fi
exit $rc
