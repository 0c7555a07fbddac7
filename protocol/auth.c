/*
 * auth.c - shared-key proofs for HELLO/AUTH and key files
 * (mstore-protocol(7), "Authentication"). Pure computation apart from
 * mst_key_load, which reads one file.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "mstclient.h"

#define AUTH_LABEL "mstore-auth-1 "

void
mst_auth_proof(const uint8_t *key, size_t keylen, const char *role,
    const uint8_t cnonce[MST_NONCE_LEN], const uint8_t snonce[MST_NONCE_LEN],
    uint8_t out[MST_PROOF_LEN])
{
	uint8_t msg[sizeof AUTH_LABEL + 16 + 2 * MST_NONCE_LEN];
	size_t n = 0, rl = strlen(role);
	unsigned olen = MST_PROOF_LEN;

	if (rl > 16)
		rl = 16;
	memcpy(msg, AUTH_LABEL, sizeof AUTH_LABEL - 1);
	n += sizeof AUTH_LABEL - 1;
	memcpy(msg + n, role, rl);
	n += rl;
	memcpy(msg + n, cnonce, MST_NONCE_LEN);
	n += MST_NONCE_LEN;
	memcpy(msg + n, snonce, MST_NONCE_LEN);
	n += MST_NONCE_LEN;
	/* HMAC-SHA256 cannot fail with valid arguments; a NULL result would
	 * leave |out| unset, so clear it first to fail closed. */
	memset(out, 0, MST_PROOF_LEN);
	if (HMAC(EVP_sha256(), key, (int)keylen, msg, n, out, &olen) == NULL)
		memset(out, 0, MST_PROOF_LEN);
}

int
mst_auth_equal(const uint8_t a[MST_PROOF_LEN], const uint8_t b[MST_PROOF_LEN])
{
	return CRYPTO_memcmp(a, b, MST_PROOF_LEN) == 0;
}

int
mst_key_load(const char *path, uint8_t *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;
	uint8_t extra;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	/* A key others can read is no secret, and one they can write is
	 * theirs: refuse both, as ssh does for private keys. */
	if (fstat(fd, &st) < 0) {
		r = -errno;
		close(fd);
		return (int)r;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		close(fd);
		return -EPERM;
	}
	while (n < cap) {
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			r = -errno;
			close(fd);
			return (int)r;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	r = n == cap ? read(fd, &extra, 1) : 0;
	close(fd);
	if (r > 0)
		return -EFBIG;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	return n == 0 ? -EINVAL : (int)n;
}

const char *
mst_key_strerror(int rc)
{
	switch (rc) {
	case -EINVAL:
		return "empty key";
	case -EFBIG:
		return "key longer than 1024 bytes";
	case -EPERM:
		return "group or others have access to it (chmod 600 it)";
	default:
		return strerror(-rc);
	}
}
