#!/bin/sh
#
# on_memory.sh - test_mount.py and test_posix.py with every store on
# mstored --backend memory (on_backend.py memory): the mount-level cases
# must hold on that back-end as they do on local. Fails when either
# suite fails; skipped (77) only when both were skipped. Each suite runs
# under timeout(1), so a hang fails instead of blocking.

here=$(cd "$(dirname "$0")" && pwd)
rc=0
ran=0
for t in test_mount.py test_posix.py; do
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
