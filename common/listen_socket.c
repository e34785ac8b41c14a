/*
 * listen_socket.c — see listen_socket.h.
 */
#include "listen_socket.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int listen_socket_open(const char *address, int port, int flags, int backlog, char *err,
                       size_t errlen)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICSERV | AI_PASSIVE, .ai_socktype = SOCK_STREAM};
    if (flags & LISTEN_NUMERIC_HOST)
        hints.ai_flags |= AI_NUMERICHOST;
    struct addrinfo *ai = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(address, service, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "%s:%d: %s", address, port, gai_strerror(rc));
        return -1;
    }
    int type = SOCK_STREAM | SOCK_CLOEXEC | (flags & LISTEN_NONBLOCK ? SOCK_NONBLOCK : 0);
    int fd = socket(ai->ai_family, type, 0), one = 1;
    const char *step = NULL;
    if (fd < 0)
        step = "socket";
    else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        step = "setsockopt SO_REUSEADDR";
    else if ((flags & LISTEN_REUSE_PORT) &&
             setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        step = "setsockopt SO_REUSEPORT";
    else if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
        step = "";
    else if (listen(fd, backlog) != 0)
        step = "listen";
    freeaddrinfo(ai);
    if (step == NULL)
        return fd;
    int e = errno;
    snprintf(err, errlen, "%s:%d: %s%s%s", address, port, step, step[0] ? ": " : "", strerror(e));
    if (fd >= 0)
        close(fd);
    return -1;
}
