/* Migration URIs: every accepted form parses to what a user means, and every bad one is refused
 * with a message quoting it. A unix and a tcp listener accept a real connection. */
#include "ferry/migration/transport.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void test_parse(void **state)
{
    (void)state;
    FerryUri u;
    FerryError err = {0};
    assert_int_equal(ferry_uri_parse("tcp:127.0.0.1:4444", &u, &err), 0);
    assert_int_equal(u.kind, FERRY_URI_TCP);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "4444");
    assert_int_equal(ferry_uri_parse("tcp:[::1]:5", &u, &err), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(ferry_uri_parse("tcp::7", &u, &err), 0);
    assert_string_equal(u.host, "0.0.0.0");
    assert_int_equal(ferry_uri_parse("unix:/tmp/x.sock", &u, &err), 0);
    assert_int_equal(u.kind, FERRY_URI_UNIX);
    assert_int_equal(ferry_uri_parse("file:/tmp/snap", &u, &err), 0);
    assert_int_equal(u.kind, FERRY_URI_FILE);
    assert_string_equal(u.path, "/tmp/snap");
    assert_int_equal(ferry_uri_parse("fd:0", &u, &err), 0);
    assert_int_equal(u.fd, 0);

    const char *bad[] = {"tcp:host",  "tcp:h:99999", "tcp:h:x",  "unix:", "fd:abc",
                         "fd:999999", "exec:cat",    "rdma:h:1", "",      "tcp:[::1:5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = ferry_uri_parse(bad[i], &u, &err);
        if (r >= 0)
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(strstr(err.msg, bad[i]));
    }
}

static void roundtrip(const char *uri_listen, const char *fmt)
{
    FerryUri u;
    FerryError err = {0};
    assert_int_equal(ferry_uri_parse(uri_listen, &u, &err), 0);
    int l = ferry_uri_listen(&u, &err);
    assert_true(l >= 0);
    char uri[256];
    if (u.kind == FERRY_URI_TCP)
        snprintf(uri, sizeof(uri), fmt, ferry_uri_listen_port(l));
    else
        snprintf(uri, sizeof(uri), "%s", uri_listen);
    FerryUri c;
    assert_int_equal(ferry_uri_parse(uri, &c, &err), 0);
    int fd = ferry_uri_connect(&c, &err);
    assert_true(fd >= 0);
    int a = ferry_uri_accept(l, 2000, &err);
    assert_true(a >= 0);
    assert_int_equal(write(fd, "hi", 2), 2);
    char buf[2];
    assert_int_equal(read(a, buf, 2), 2);
    assert_memory_equal(buf, "hi", 2);
    close(a);
    close(fd);
    /* Nobody else connects: accept times out with a message. */
    assert_int_equal(ferry_uri_accept(l, 10, &err), -ETIMEDOUT);
    close(l);
}

static void test_sockets(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/ferry-transport-%d.sock", (int)getpid());
    roundtrip(path, NULL);
    unlink(path + 5);
    roundtrip("tcp:127.0.0.1:0", "tcp:127.0.0.1:%d");
}

static void test_connect_refused(void **state)
{
    (void)state;
    FerryUri u;
    FerryError err = {0};
    assert_int_equal(ferry_uri_parse("unix:/nonexistent/ferry.sock", &u, &err), 0);
    assert_true(ferry_uri_connect(&u, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/ferry.sock"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_sockets),
        cmocka_unit_test(test_connect_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
