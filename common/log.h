/*
 * log.h — one-line log records on stderr:
 *   2026-11-26T04:31:49.123Z tally-ingest info: message
 * Messages below the configured level are dropped. Thread-safe (one write per line).
 * With log.file, stderr itself is that file (so libraries' own lines land
 * there too), opened for appending; log_reopen() opens it again, for SIGHUP
 * after a log rotation.
 */
#ifndef TALLY_LOG_H
#define TALLY_LOG_H

typedef enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level;

void log_init(const char *program, log_level level);
/* Parses "debug", "info", "warn", "error"; returns -1 when unknown. */
int log_level_parse(const char *name);
void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Points stderr at `path` (appending, created 0640); "" keeps stderr.
 * 0, or -1 with errno set. */
int log_open_file(const char *path);

/* Opens the log_open_file() path again (a no-op without one) and logs how
 * that went: what SIGHUP does after a log rotation. */
void log_reopen(void);

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
