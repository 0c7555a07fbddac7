#!/bin/sh
#
# check_manpage.sh - keeps the man pages honest against the code.
#
# Checks that man/mstore-protocol.7 documents exactly the opcodes of
# "enum mst_op" and the status codes of "enum mst_status" in
# protocol/mstproto.h, with the same numbers, and that the page renders
# without groff warnings.
#
# Where the man page documents them (keep these forms, the check greps
# for them):
#   - one section heading per opcode:        .SS "DELIVER (0x10)"
#   - one row per opcode in the OPERATIONS
#     summary table (tab-separated):         0x10<TAB>DELIVER<TAB>...
#   - one row per status in the STATUS CODES
#     table (tab-separated):                 17<TAB>EEXIST<TAB>...
#     (the name without its MST_S_ prefix; MST_S_OK is "0<TAB>OK")
#
# Also checks that every program and script listed in OPTION_PAGES below
# and its man page agree on the options, both ways: each option its --help
# output lists (lines "  -x, --long ARG  text") is documented in the page's
# OPTIONS section as the tag of a .TP or .TQ item (".BR \-x , \-\-long"),
# and each option documented there is listed by --help. Every page
# checked renders without groff warnings. C programs are taken from the
# build directory ($abs_top_builddir, else .); a missing one is reported.
#
# Run by "make check", which sets $srcdir; by hand from anywhere:
#   sh tests/check_manpage.sh            (srcdir = this script's dir/..)
#   srcdir=/path/to/tree sh tests/check_manpage.sh
# Exit status: 0 consistent, 1 inconsistent or bad rendering, 99 setup
# error (files missing), as automake's test driver expects.

LC_ALL=C
export LC_ALL

if [ -z "${srcdir:-}" ]; then
	srcdir=$(dirname "$0")/..
fi
hdr=$srcdir/protocol/mstproto.h
page=$srcdir/man/mstore-protocol.7
me=check_manpage

for f in "$hdr" "$page"; do
	if [ ! -r "$f" ]; then
		echo "$me: cannot read $f (srcdir=$srcdir)" >&2
		exit 99
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check_manpage.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' 0
trap 'exit 99' HUP INT TERM
: >"$tmp/problems"
: >"$tmp/nopts"

problem()
{
	echo "$*" >>"$tmp/problems"
}

# Numbers as decimal: "0x1F" -> 31, "17" -> 17. Shared by every awk below.
AWK_NUM='
function num(s,    i, c, v) {
	s = tolower(s)
	if (s !~ /^0x[0-9a-f]+$/)
		return s + 0
	v = 0
	for (i = 3; i <= length(s); i++) {
		c = index("0123456789abcdef", substr(s, i, 1)) - 1
		v = v * 16 + c
	}
	return v
}'

# "NAME NUMBER" for each "PREFIX_NAME = NUMBER" inside "enum ENUM { ... };".
enum_values()
{
	awk -v enum="$1" -v prefix="$2" "$AWK_NUM"'
	$0 ~ "^enum " enum "[ \t]*[{]" { inside = 1; next }
	inside && /^[}]/ { inside = 0 }
	inside && match($0, prefix "_[A-Z0-9_]+[ \t]*=[ \t]*[0-9A-Fa-fxX]+") {
		s = substr($0, RSTART, RLENGTH)
		split(s, kv, "=")
		name = kv[1]
		gsub(/[ \t]/, "", name)
		sub("^" prefix "_", "", name)
		val = kv[2]
		gsub(/[ \t]/, "", val)
		print name, num(val)
	}' "$hdr"
}

# Lines of the page between '.SH NAME' (quotes optional) and the next .SH.
page_section()
{
	awk -v sect="$1" '
	/^\.SH/ {
		t = $0
		sub(/^\.SH[ \t]+/, "", t)
		gsub(/"/, "", t)
		inside = (t == sect)
		next
	}
	inside' "$page"
}

enum_values mst_op MST_OP >"$tmp/op.def"
enum_values mst_status MST_S >"$tmp/st.def"

# Opcodes documented as section headings: .SS "NAME (0xNN)"
awk "$AWK_NUM"'
/^\.SS[ \t]+"?[A-Z0-9_]+ [(]0[xX][0-9A-Fa-f]+[)]"?[ \t]*$/ {
	s = $0
	sub(/^\.SS[ \t]+"?/, "", s)
	sub(/[)]"?[ \t]*$/, "", s)
	split(s, f, " [(]")
	print f[1], num(f[2])
}' "$page" >"$tmp/op.ss"

# Opcodes in the summary table of OPERATIONS: 0xNN<TAB>NAME<TAB>...
page_section OPERATIONS | awk "$AWK_NUM"'
/^0[xX][0-9A-Fa-f]+\t[A-Z0-9_]+(\t|$)/ {
	split($0, f, "\t")
	print f[2], num(f[1])
}' >"$tmp/op.tbl"

# Status codes in the table of STATUS CODES: NN<TAB>NAME<TAB>...
page_section "STATUS CODES" | awk '
/^[0-9]+\t[A-Z0-9_]+(\t|$)/ {
	split($0, f, "\t")
	print f[2], f[1] + 0
}' >"$tmp/st.tbl"

# compare WHAT WHERE FORMAT DEFINED DOCUMENTED
#   WHAT: "opcode" or "status code"; WHERE: the place in the page;
#   FORMAT: hex or dec, for the messages.
compare()
{
	if [ ! -s "$4" ]; then
		problem "$me: found no ${1}s in $hdr (did its enum move?)"
		return
	fi
	if [ ! -s "$5" ]; then
		problem "$me: found no ${1}s in $page: $2"
		return
	fi
	awk -v what="$1" -v where="$2" -v fmt="$3" -v hdr="$hdr" \
	    -v page="$page" '
	function show(n) { return fmt == "hex" ? sprintf("0x%02X", n) : n }
	FNR == NR { def[$1] = $2; next }
	{
		if ($1 in doc) {
			printf "%s: %s %s is documented twice (%s)\n", \
			    page, what, $1, where
			next
		}
		doc[$1] = $2
	}
	END {
		for (n in def) {
			if (!(n in doc))
				printf "%s: %s %s (%s) is defined in %s " \
				    "but missing from %s\n", page, what, n, \
				    show(def[n]), hdr, where
			else if (doc[n] != def[n])
				printf "%s: %s %s is documented as %s in %s " \
				    "but defined as %s in %s\n", page, what, \
				    n, show(doc[n]), where, show(def[n]), hdr
		}
		for (n in doc)
			if (!(n in def))
				printf "%s: %s %s (%s) is documented in %s " \
				    "but not defined in %s\n", page, what, n, \
				    show(doc[n]), where, hdr
	}' "$4" "$5" | sort >>"$tmp/problems"
}

compare opcode 'the .SS "NAME (0xNN)" headings' hex \
    "$tmp/op.def" "$tmp/op.ss"
compare opcode "the OPERATIONS summary table" hex \
    "$tmp/op.def" "$tmp/op.tbl"
compare "status code" "the STATUS CODES table" dec \
    "$tmp/st.def" "$tmp/st.tbl"

# Rendering of one page. man(1) runs tbl only when the first line asks
# for it.
render()
{
	page=$1
	if grep -q '^\.TS' "$page" && ! head -n 1 "$page" | grep -q "^'\\\\\" t"; then
		problem "$page: uses tables but its first line is not '\\\" t"
	fi

	rendered=0
	if command -v groff >/dev/null 2>&1; then
		devs=utf8
		# The default device (ps) is not in every groff installation.
		if groff -Tps -z </dev/null >/dev/null 2>&1; then
			devs="ps utf8"
		fi
		for dev in $devs; do
			groff -t -man -T"$dev" -ww -z "$page" >"$tmp/groff.err" 2>&1
			rc=$?
			if [ "$rc" -ne 0 ] || [ -s "$tmp/groff.err" ]; then
				problem "$page: groff -t -man -T$dev -ww -z" \
				    "(exit $rc) says:"
				sed 's/^/    /' "$tmp/groff.err" >>"$tmp/problems"
			fi
		done
		# Nothing wider than an 80-column terminal (the protocol
		# page's byte diagrams).
		if [ "${2:-}" = narrow ]; then
			groff -t -man -Tascii -P-cbou -rcR=1 -rLL=78n "$page" \
			    2>/dev/null | awk 'length > 80 {
				printf "    line %d is %d columns: %s\n",
				    NR, length, $0 }' >"$tmp/wide"
			if [ -s "$tmp/wide" ]; then
				problem "$page: $(wc -l <"$tmp/wide" |
				    tr -d ' ') rendered line(s) wider than" \
				    "80 columns, first ones:"
				head -n 5 "$tmp/wide" >>"$tmp/problems"
			fi
		fi
		rendered=1
	fi
	if command -v man >/dev/null 2>&1; then
		MANWIDTH=80 man -l "$page" >/dev/null 2>"$tmp/man.err"
		rc=$?
		if [ "$rc" -ne 0 ] || [ -s "$tmp/man.err" ]; then
			problem "$page: man -l (exit $rc) says:"
			sed 's/^/    /' "$tmp/man.err" >>"$tmp/problems"
		fi
		rendered=1
	fi
	if [ "$rendered" -eq 0 ]; then
		echo "$me: neither groff nor man found: $page rendering not checked"
	fi
}

render "$page" narrow

# --- Options of programs and scripts against their pages ---
# One line per page: the page, a tab, then the commands (';'-separated,
# relative to the source tree, or to the build tree for @-prefixed ones)
# whose --help output together lists the program's options.
OPTION_PAGES="
man/mstored.8	@storeserver/mstored --help
man/mstore-ctl.8	@tools/mstore-ctl --help
man/mstore-bench.1	@tools/mstore-bench --help
man/netlab.1	@tools/netlab --help
man/mount.mstore.8	@fuse-mount/mount.mstore --help
man/ceph-minicluster.1	tools/lab/ceph-minicluster --help; tools/lab/ceph-minicluster start --help; tools/lab/ceph-minicluster stop --help; tools/lab/ceph-minicluster status --help; tools/lab/ceph-minicluster kill-osd --help; tools/lab/ceph-minicluster start-osd --help
man/cluster-bench.1	tools/bench/cluster-bench --help
man/nfs-server.8	tools/lab/nfs-server --help; tools/lab/nfs-server start --help; tools/lab/nfs-server stop --help
man/mta-bench.1	tools/lab/mta-bench --help
man/bench-all.1	tools/bench/bench-all --help
man/restart-bench.1	tools/bench/restart-bench --help
man/ckpt-bench.1	tools/bench/ckpt-bench --help
man/stall-bench.1	tools/bench/stall-bench --help
man/bench-writes.1	tools/bench/bench-writes --help
man/bench-list.1	tools/bench/bench-list --help
man/mailstone.1	tools/bench/mailstone --help
man/mount-requests.1	tools/bench/mount-requests --help
man/demo.1	tools/lab/demo --help
"
builddir=${abs_top_builddir:-.}
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

# Option names in --help output: the first column of lines indented by at
# most 8 spaces that start with '-' ("  -n N, --messages N   text").
help_options()
{
	awk '
	match($0, /^ +-/) && RLENGTH <= 9 {
		spec = $0
		sub(/^ +/, "", spec)
		sub(/  .*/, "", spec)
		n = split(spec, part, /, */)
		for (i = 1; i <= n; i++)
			if (match(part[i], /^--?[A-Za-z0-9?][-A-Za-z0-9]*/))
				print substr(part[i], RSTART, RLENGTH)
	}'
}

# Option names documented in PAGE: the tag lines of .TP items in OPTIONS.
page_options()
{
	awk '
	/^\.SH/ {
		t = $0
		sub(/^\.SH[ \t]+/, "", t)
		gsub(/"/, "", t)
		inside = (t == "OPTIONS")
		next
	}
	inside && /^\.(TP|TQ)/ { tag = 1; next }
	inside && tag {
		tag = 0
		l = $0
		sub(/^\.[A-Z]+[ \t]*/, "", l)
		gsub(/\\-/, "-", l)
		gsub(/\\f[BIRP]/, "", l)
		gsub(/\\[&|^]/, "", l)
		gsub(/["\[\]|,=]/, " ", l)
		n = split(l, w, /[ \t]+/)
		for (i = 1; i <= n; i++)
			if (w[i] ~ /^--?[A-Za-z0-9?][-A-Za-z0-9]*$/)
				print w[i]
	}' "$1"
}

echo "$OPTION_PAGES" | while IFS='	' read -r opage cmds; do
	[ -n "$opage" ] || continue
	: >"$tmp/help.out"
	echo "$cmds" | tr ';' '\n' | while read -r prog args; do
		case $prog in
		@*) prog=$builddir/${prog#@} ;;
		*) prog=$srcdir/$prog ;;
		esac
		if [ ! -x "$prog" ]; then
			problem "$me: $prog: missing or not executable" \
			    "(build first; abs_top_builddir=$builddir)"
			continue
		fi
		# shellcheck disable=SC2086
		if ! "$prog" $args >>"$tmp/help.out" 2>"$tmp/help.err"; then
			problem "$me: '$prog $args' failed:"
			sed 's/^/    /' "$tmp/help.err" >>"$tmp/problems"
		fi
	done
	if [ ! -r "$srcdir/$opage" ]; then
		problem "$me: $srcdir/$opage: missing"
		continue
	fi
	help_options <"$tmp/help.out" | sort -u >"$tmp/opt.help"
	page_options "$srcdir/$opage" | sort -u >"$tmp/opt.page"
	if [ ! -s "$tmp/opt.help" ]; then
		problem "$me: $cmds: lists no options"
		continue
	fi
	comm -23 "$tmp/opt.help" "$tmp/opt.page" | while read -r o; do
		problem "$srcdir/$opage: option $o is accepted ($cmds)" \
		    "but not documented in OPTIONS"
	done
	comm -13 "$tmp/opt.help" "$tmp/opt.page" | while read -r o; do
		problem "$srcdir/$opage: option $o is documented in OPTIONS" \
		    "but not accepted ($cmds)"
	done
	wc -l <"$tmp/opt.help" | tr -d ' ' >>"$tmp/nopts"
	render "$srcdir/$opage"
done

if [ -s "$tmp/problems" ]; then
	cat "$tmp/problems" >&2
	echo "$me: FAIL: $(grep -c '^[^ ]' "$tmp/problems") problem(s)" >&2
	exit 1
fi
echo "$me: OK: $(wc -l <"$tmp/op.def" | tr -d ' ') opcodes and" \
    "$(wc -l <"$tmp/st.def" | tr -d ' ') status codes documented" \
    "with their numbers; options of $(grep -c . "$tmp/nopts")" \
    "programs match their pages"
exit 0
