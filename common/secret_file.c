/*
 * secret_file.c — see secret_file.h.
 *
 * open() with O_NONBLOCK so that a FIFO put in place of the file cannot
 * hang the start (for a regular file the flag changes nothing), then fstat()
 * on the descriptor: type and mode are those of the file actually read, even
 * if the path is a symlink or is replaced meanwhile. Only the permission bits
 * are checked, not the owner: a file owned by someone else and mode 0600 is
 * unreadable to us anyway, and a root-owned 0600 file read by root is fine.
 * The buffer is wiped before it is freed so the secret does not linger in
 * freed heap memory; copies the caller makes are the caller's to wipe.
 */
#include "secret_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int secret_file_read(const char *path, size_t max_bytes, char **out, size_t *out_len, char *err,
                     size_t errlen)
{
    *out = NULL;
    *out_len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        (void)close(fd); /* read-only: nothing to lose */
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        (void)close(fd);
        return -1;
    }
    if ((st.st_mode & 077) != 0) {
        snprintf(err, errlen,
                 "%s: permissions %04o are too open: it holds a secret, so its group and "
                 "others must have no access (chmod 600 %s)",
                 path, (unsigned)(st.st_mode & 07777), path);
        (void)close(fd);
        return -1;
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size > max_bytes) {
        snprintf(err, errlen, "%s: larger than %zu bytes", path, max_bytes);
        (void)close(fd);
        return -1;
    }
    char *buf = malloc(max_bytes + 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        (void)close(fd);
        return -1;
    }
    size_t used = 0;
    for (;;) {
        /* read one byte past max_bytes: a file that grew since fstat is caught */
        ssize_t n = read(fd, buf + used, max_bytes + 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
            secret_file_free(buf, used);
            (void)close(fd);
            return -1;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > max_bytes) {
            snprintf(err, errlen, "%s: larger than %zu bytes", path, max_bytes);
            secret_file_free(buf, max_bytes);
            (void)close(fd);
            return -1;
        }
    }
    (void)close(fd);
    buf[used] = '\0';
    *out = buf;
    *out_len = used;
    return 0;
}

void secret_file_free(char *buf, size_t len)
{
    if (!buf)
        return;
    explicit_bzero(buf, len + 1);
    free(buf);
}
