/*
 * log.c - mstored's log sink. Owns the log file descriptor and the
 * syslog connection. Each call formats its line on the caller's stack and
 * hands it to the sink in one write(2) under |log_mu|, so lines from the
 * loop and the engine's threads never interleave. Never blocks on
 * anything but that write; never logs about itself failing (there is
 * nowhere to say it).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX	2048

enum log_target {
	TGT_EARLY,		/* before log_open: "mstored: msg" on stderr */
	TGT_STDERR,
	TGT_SYSLOG,
	TGT_FILE,
};

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static enum log_target log_tgt = TGT_EARLY;	/* guarded by log_mu */
static int log_fd = -1;				/* guarded by log_mu */
static char *log_path;				/* guarded by log_mu */
static int log_echo;				/* guarded by log_mu */
static int log_lvl = LOG_LVL_INFO;		/* atomic */

static const char *const level_names[] = {
	[LOG_LVL_ERR] = "err",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

static const int syslog_prio[] = {
	[LOG_LVL_ERR] = LOG_ERR,
	[LOG_LVL_WARN] = LOG_WARNING,
	[LOG_LVL_INFO] = LOG_INFO,
	[LOG_LVL_DEBUG] = LOG_DEBUG,
};

/* The one place that handles EINTR and short writes for the log. */
static void
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;		/* nowhere left to report it */
		p += w;
		n -= (size_t)w;
	}
}

/* Client-supplied names end up in messages: keep each line one line. */
static void
sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static void
emit_plain(const char *msg)
{
	char line[LOG_LINE_MAX + 16];
	int n = snprintf(line, sizeof line, "mstored: %s\n", msg);

	write_all(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n :
	    sizeof line - 1);
}

static void
emit_stamped(int fd, enum log_level level, const char *msg)
{
	char line[LOG_LINE_MAX + 96], stamp[32];
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
	n = snprintf(line, sizeof line, "%s.%03ld mstored[%d] %s: %s\n", stamp,
	    ts.tv_nsec / 1000000, (int)getpid(), level_names[level], msg);
	write_all(fd, line, (size_t)n < sizeof line ? (size_t)n :
	    sizeof line - 1);
}

static void
log_v(enum log_level level, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX];

	if (!log_enabled(level))
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	sanitize(msg);
	pthread_mutex_lock(&log_mu);
	switch (log_tgt) {
	case TGT_EARLY:
		emit_plain(msg);
		break;
	case TGT_STDERR:
		emit_stamped(STDERR_FILENO, level, msg);
		break;
	case TGT_FILE:
		emit_stamped(log_fd, level, msg);
		break;
	case TGT_SYSLOG:
		syslog(syslog_prio[level], "%s", msg);
		break;
	}
	if (log_echo && level <= LOG_LVL_WARN && log_tgt != TGT_EARLY &&
	    log_tgt != TGT_STDERR)
		emit_plain(msg);
	pthread_mutex_unlock(&log_mu);
}

#define LOG_FN(fn, level)                                                    \
	void fn(const char *fmt, ...)                                        \
	{                                                                    \
		va_list ap;                                                  \
                                                                             \
		va_start(ap, fmt);                                           \
		log_v(level, fmt, ap);                                       \
		va_end(ap);                                                  \
	}

LOG_FN(log_err, LOG_LVL_ERR)
LOG_FN(log_warn, LOG_LVL_WARN)
LOG_FN(log_info, LOG_LVL_INFO)
LOG_FN(log_debug, LOG_LVL_DEBUG)

int
log_enabled(enum log_level level)
{
	return (int)level <= __atomic_load_n(&log_lvl, __ATOMIC_RELAXED);
}

static int
open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	return fd < 0 ? -errno : fd;
}

/* Caller holds log_mu. */
static void
close_target(void)
{
	if (log_tgt == TGT_SYSLOG)
		closelog();
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	free(log_path);
	log_path = NULL;
}

int
log_open(const char *target, enum log_level level)
{
	char *path = NULL;
	int fd = -1;

	if (strcmp(target, "stderr") != 0 && strcmp(target, "syslog") != 0) {
		path = strdup(target);
		if (path == NULL)
			return -ENOMEM;
		fd = open_file(path);
		if (fd < 0) {
			free(path);
			return fd;
		}
	}
	pthread_mutex_lock(&log_mu);
	close_target();
	if (path != NULL) {
		log_tgt = TGT_FILE;
		log_fd = fd;
		log_path = path;
	} else if (strcmp(target, "syslog") == 0) {
		log_tgt = TGT_SYSLOG;
		openlog("mstored", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	} else {
		log_tgt = TGT_STDERR;
	}
	__atomic_store_n(&log_lvl, (int)level, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&log_mu);
	return 0;
}

int
log_reopen(void)
{
	int fd, old, rc = 0;

	pthread_mutex_lock(&log_mu);
	if (log_tgt == TGT_FILE) {
		fd = open_file(log_path);
		if (fd < 0) {
			rc = fd;
		} else {
			old = log_fd;
			log_fd = fd;
			close(old);
		}
	}
	pthread_mutex_unlock(&log_mu);
	return rc;
}

void
log_echo_stderr(int on)
{
	pthread_mutex_lock(&log_mu);
	log_echo = on;
	pthread_mutex_unlock(&log_mu);
}

void
log_close(void)
{
	pthread_mutex_lock(&log_mu);
	close_target();
	log_tgt = TGT_EARLY;
	pthread_mutex_unlock(&log_mu);
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}
