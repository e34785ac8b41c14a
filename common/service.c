/*
 * service.c — see service.h (sd_notify from libsystemd).
 */
#include "service.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "clock.h"
#include "log.h"

static int warned;
static int watchdog_checked;
static uint64_t watchdog_every_us; /* 0: no watchdog */
static uint64_t watchdog_last_us;

static void notify(const char *state)
{
    int rc = sd_notify(0, state);
    if (rc < 0 && !warned) {
        warned = 1;
        log_warn("sd_notify(%.20s...) failed: %s", state, strerror(-rc));
    }
}

static void notify_with_status(const char *head, const char *fmt, va_list ap)
{
    char status[256], state[300];
    vsnprintf(status, sizeof status, fmt, ap);
    snprintf(state, sizeof state, "%sSTATUS=%s", head, status);
    notify(state);
}

void service_ready(const char *status_fmt, ...)
{
    va_list ap;
    va_start(ap, status_fmt);
    notify_with_status("READY=1\n", status_fmt, ap);
    va_end(ap);
}

void service_stopping(void)
{
    notify("STOPPING=1\nSTATUS=draining");
}

void service_status(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    notify_with_status("", fmt, ap);
    va_end(ap);
}

void service_watchdog_tick(void)
{
    if (!watchdog_checked) {
        uint64_t usec = 0;
        watchdog_checked = 1;
        if (sd_watchdog_enabled(0, &usec) > 0)
            watchdog_every_us = usec / 2;
    }
    if (watchdog_every_us == 0)
        return;
    uint64_t now = (uint64_t)(clock_mono_ns() / 1000);
    if (now - watchdog_last_us < watchdog_every_us)
        return;
    watchdog_last_us = now;
    notify("WATCHDOG=1");
}
