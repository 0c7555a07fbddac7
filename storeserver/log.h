/*
 * log.h - mstored's log: stderr, syslog or a file, one line per call.
 *
 * Thread-safe: the loop thread and the engine's worker threads log
 * through the same functions. Before log_open() every line goes to
 * stderr as "mstored: message", so start-up errors reach the terminal.
 */
#ifndef MST_LOG_H
#define MST_LOG_H

#define MST_LOG_FMT __attribute__((format(printf, 1, 2)))

enum log_level {
	LOG_LVL_ERR,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

void log_err(const char *fmt, ...) MST_LOG_FMT;
void log_warn(const char *fmt, ...) MST_LOG_FMT;
void log_info(const char *fmt, ...) MST_LOG_FMT;
void log_debug(const char *fmt, ...) MST_LOG_FMT;

/*
 * Send the log to |target|: "stderr", "syslog" or the path of a file
 * (opened for appending, created 0640). Lines below |level| are dropped.
 * Returns 0 or a negative errno from open(2); the previous target stays
 * in use on failure.
 */
int log_open(const char *target, enum log_level level);
/* Reopen a log file (after rotation, on SIGHUP); no-op for the others.
 * Returns 0 or a negative errno, and keeps the old file on failure. */
int log_reopen(void);
/* While set, errors are also copied to stderr (a daemon that has not yet
 * detached still has the operator's terminal there). */
void log_echo_stderr(int on);
/* Is |level| currently logged? Lets callers skip costly formatting. */
int log_enabled(enum log_level level);
void log_close(void);

/* "err", "warn", "info", "debug" -> level; 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

#endif /* MST_LOG_H */
