/*
 * test_listen_socket.c — listen_socket_open on loopback: a second socket on a
 * taken port is refused unless both asked for SO_REUSEPORT (how two
 * tally-ingest processes share ingest.listen_port), and the errors name the
 * address, the port and why.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "listen_socket.h"

/* The port the kernel gave an ephemeral listener. */
static int port_of(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

static void test_taken_port_refused(void **state)
{
    (void)state;
    char err[256];
    int a = listen_socket_open("127.0.0.1", 0, LISTEN_NUMERIC_HOST, 16, err, sizeof err);
    assert_true(a >= 0);
    int port = port_of(a);
    int b = listen_socket_open("127.0.0.1", port, LISTEN_NUMERIC_HOST, 16, err, sizeof err);
    assert_int_equal(b, -1);
    char want[128];
    snprintf(want, sizeof want, "127.0.0.1:%d: Address already in use", port);
    assert_string_equal(err, want);
    /* one side asking for SO_REUSEPORT is not enough */
    b = listen_socket_open("127.0.0.1", port, LISTEN_REUSE_PORT, 16, err, sizeof err);
    assert_int_equal(b, -1);
    close(a);
}

static void test_reuse_port_shares(void **state)
{
    (void)state;
    char err[256];
    int a = listen_socket_open("127.0.0.1", 0, LISTEN_REUSE_PORT | LISTEN_NONBLOCK, 16, err, sizeof err);
    assert_true(a >= 0);
    int port = port_of(a);
    int b = listen_socket_open("127.0.0.1", port, LISTEN_REUSE_PORT | LISTEN_NONBLOCK, 16, err, sizeof err);
    assert_true(b >= 0);
    assert_int_equal(port_of(b), port);
    assert_true(fcntl(a, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(a, F_GETFD) & FD_CLOEXEC);
    int one = 0;
    socklen_t len = sizeof one;
    assert_int_equal(getsockopt(b, SOL_SOCKET, SO_REUSEPORT, &one, &len), 0);
    assert_int_equal(one, 1);
    /* a plain socket is still refused while the two hold the port */
    assert_int_equal(listen_socket_open("127.0.0.1", port, 0, 16, err, sizeof err), -1);
    close(a);
    close(b);
}

static void test_bad_address(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(listen_socket_open("not-an-address", 8080, LISTEN_NUMERIC_HOST, 16, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "not-an-address:8080: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_taken_port_refused),
        cmocka_unit_test(test_reuse_port_shares),
        cmocka_unit_test(test_bad_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
