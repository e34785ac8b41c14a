/*
 * progress_bar.h — progress of a long operation (a replay, a rebuild, a
 * drill) for the operator: a bar redrawn in place on a terminal, a plain
 * line every few seconds otherwise (a log file, a pipe).
 *
 *   [##########----------]  50.0 %  5,000 / 10,000 records  12 s left
 *
 * progress_bar_render() is pure (the text of one state); the rest writes it
 * to the stream given, at most every PROGRESS_TTY_MS on a terminal and every
 * PROGRESS_LOG_MS elsewhere.
 */
#ifndef TALLY_PROGRESS_BAR_H
#define TALLY_PROGRESS_BAR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PROGRESS_WIDTH 20
#define PROGRESS_TTY_MS 200
#define PROGRESS_LOG_MS 5000

typedef struct progress_bar {
    FILE *out;
    const char *what;   /* the unit counted, e.g. "records" */
    int64_t total;
    int tty;
    double started, drawn; /* seconds (monotonic) */
} progress_bar;

/* Renders `done` of `total` after `elapsed` seconds into buf (always
 * NUL-terminated); a total <= 0 shows the count only. */
void progress_bar_render(char *buf, size_t len, const char *what, int64_t done, int64_t total,
                         double elapsed);

void progress_bar_start(progress_bar *b, FILE *out, const char *what, int64_t total);
void progress_bar_update(progress_bar *b, int64_t done);
/* Draws the final state and ends the line. */
void progress_bar_finish(progress_bar *b, int64_t done);

#endif
