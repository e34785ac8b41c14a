/*
 * service.h — life under systemd's Type=notify: READY=1 once a process serves,
 * STOPPING=1 when it starts to drain, WATCHDOG=1 while its main loop turns
 * (WatchdogSec=), STATUS= lines for `systemctl status`. Outside systemd (no
 * NOTIFY_SOCKET) every call does nothing; a failed notification is logged
 * once and never stops the service.
 */
#ifndef TALLY_SERVICE_H
#define TALLY_SERVICE_H

void service_ready(const char *status_fmt, ...) __attribute__((format(printf, 1, 2)));
void service_stopping(void);
void service_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sends WATCHDOG=1 when half of WatchdogSec has passed since the last one;
 * cheap, so the main loop calls it on every turn (at least once a second). */
void service_watchdog_tick(void);

#endif
