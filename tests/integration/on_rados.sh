#!/bin/sh
#
# on_rados.sh - the protocol-level and mount-level suites with every
# store on mstored --backend rados: one private memstore Ceph cluster
# (on_backend.py rados) for the hostile client catalogue
# (tests/hostile_client.py), test_mount.py, test_shared.py, test_locks.py, test_perms.py,
# test_layouts.py and test_posix.py, each store in a namespace of its
# own, and test_namespaces.py, which checks that those stores are apart.
# The cases the rados back-end cannot pass yet are printed as SKIP with
# the reason (mstlib.NOT_ON_BACKEND). Skipped (77) when the Ceph packages
# are missing; the whole run is under timeout(1).

here=$(cd "$(dirname "$0")" && pwd)
exec timeout 600 python3 "$here/on_backend.py" rados \
	"$here/../hostile_client.py" + \
	"$here/test_mount.py" + "$here/test_shared.py" + \
	"$here/test_locks.py" + "$here/test_perms.py" + \
	"$here/test_layouts.py" + "$here/test_posix.py" + \
	"$here/test_namespaces.py"
