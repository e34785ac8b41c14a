/*
 * log.c — see log.h. Each record is formatted into a local buffer and written
 * with a single write(2), so lines from several threads never interleave.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *log_program = "tally";
static log_level log_threshold = LOG_LEVEL_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

static char log_path[1024];

int log_open_file(const char *path)
{
    if (!path[0])
        return 0;
    if (strlen(path) >= sizeof log_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    int rc = fd == STDERR_FILENO ? 0 : dup2(fd, STDERR_FILENO) < 0 ? -1 : 0;
    int saved = errno;
    if (fd != STDERR_FILENO)
        close(fd);
    errno = saved;
    if (rc == 0 && path != log_path)
        snprintf(log_path, sizeof log_path, "%s", path);
    return rc;
}

void log_reopen(void)
{
    if (!log_path[0])
        return;
    if (log_open_file(log_path) != 0)
        log_msg(LOG_LEVEL_ERROR, "SIGHUP: cannot open %s again: %s", log_path, strerror(errno));
    else
        log_msg(LOG_LEVEL_INFO, "SIGHUP: %s opened again", log_path);
}

void log_init(const char *program, log_level level)
{
    log_program = program;
    log_threshold = level;
}

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void log_msg(log_level level, const char *fmt, ...)
{
    if (level < log_threshold)
        return;
    char line[2048];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, now.tv_nsec / 1000000, log_program, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere left to report a failed log write */
}
