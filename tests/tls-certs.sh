#!/bin/sh
#
# tls-certs.sh DIR - make throwaway TLS material for the tests in DIR:
#   ca.pem                 a test CA (its key ca.key)
#   server.pem server.key  signed by it, for IP 127.0.0.1, ::1 and
#                          DNS localhost
#   wrongname.pem .key     signed by it, for mail.example.org only
#   other-ca.pem           an unrelated CA that signed none of them
# Needs the openssl command (Debian package 'openssl'). Exits 0 or 1.
set -eu

dir=$1
command -v openssl >/dev/null 2>&1 || {
	echo "tls-certs.sh: the openssl command is missing (apt-get install openssl)" >&2
	exit 1
}
cd "$dir"
umask 077

ca()
{
	openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 \
	    -subj "/CN=$1" -keyout "$2.key" -out "$2.pem" \
	    -addext basicConstraints=critical,CA:TRUE \
	    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

leaf()
{
	openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$2" \
	    -keyout "$1.key" -out "$1.csr" 2>/dev/null
	printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
	    "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key \
	    -CAcreateserial -days 2 -sha256 -extfile "$1.ext" \
	    -out "$1.pem" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}

ca "mstore test CA" ca
ca "unrelated test CA" other-ca
leaf server localhost "IP:127.0.0.1,IP:::1,DNS:localhost"
leaf wrongname mail.example.org "DNS:mail.example.org"
