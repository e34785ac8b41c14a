/*
 * progress_bar.c — see progress_bar.h.
 */
#include "progress_bar.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "format.h"

void progress_bar_render(char *buf, size_t len, const char *what, int64_t done, int64_t total,
                         double elapsed)
{
    char d[32], t[32];
    if (total > 0 && done > total)
        done = total;
    format_thousands(d, sizeof d, done);
    if (total <= 0) {
        snprintf(buf, len, "%s %s", d, what);
        return;
    }
    double frac = (double)done / (double)total;
    char bar[PROGRESS_WIDTH + 1];
    int filled = (int)(frac * PROGRESS_WIDTH);
    for (int i = 0; i < PROGRESS_WIDTH; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[PROGRESS_WIDTH] = '\0';
    format_thousands(t, sizeof t, total);
    char left[32] = "";
    if (done > 0 && done < total && elapsed > 0)
        snprintf(left, sizeof left, "  %.0f s left", elapsed * (1 - frac) / frac);
    snprintf(buf, len, "[%s] %5.1f %%  %s / %s %s%s", bar, 100 * frac, d, t, what, left);
}

void progress_bar_start(progress_bar *b, FILE *out, const char *what, int64_t total)
{
    *b = (progress_bar){out, what, total, isatty(fileno(out)), clock_mono_seconds(), 0};
}

static void draw(progress_bar *b, int64_t done, const char *end)
{
    char line[160];
    double now = clock_mono_seconds();
    progress_bar_render(line, sizeof line, b->what, done, b->total, now - b->started);
    fprintf(b->out, "%s%s%s", b->tty ? "\r" : "", line, end);
    fflush(b->out);
    b->drawn = now;
}

void progress_bar_update(progress_bar *b, int64_t done)
{
    if (!b->out)
        return; /* (not started) */
    double every = (b->tty ? PROGRESS_TTY_MS : PROGRESS_LOG_MS) / 1000.0;
    if (clock_mono_seconds() - b->drawn >= every)
        draw(b, done, b->tty ? "" : "\n");
}

void progress_bar_finish(progress_bar *b, int64_t done)
{
    if (!b->out)
        return;
    draw(b, done, "\n");
}
