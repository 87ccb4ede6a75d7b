/* Port-I/O bus: dispatch by range with offsets, all-ones for unmapped reads, overlap errors that
 * name both devices, and unregistration. No KVM needed. */
#include "ferry/vmm/pio.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first */
#include <errno.h>
#include <string.h>

#include <cmocka.h>

typedef struct Dev {
    uint16_t last_off;
    unsigned last_size;
    uint32_t last_val;
    int writes;
} Dev;

static uint32_t dev_read(void *opaque, uint16_t off, unsigned size)
{
    (void)opaque;
    return 0xabcd0000u | (uint32_t)(off << 4) | size;
}

static void dev_write(void *opaque, uint16_t off, unsigned size, uint32_t v)
{
    Dev *d = opaque;
    d->last_off = off;
    d->last_size = size;
    d->last_val = v;
    d->writes++;
}

static void test_dispatch_and_unmapped(void **state)
{
    (void)state;
    FerryError err = {0};
    Dev a = {0};
    FerryPioBus *bus = ferry_pio_bus_create(&err);
    assert_non_null(bus);
    assert_int_equal(ferry_pio_bus_register(bus, 0x3f8, 8, "serial", dev_read, dev_write, &a, &err),
                     0);
    uint32_t v;
    assert_int_equal(ferry_pio_bus_read(bus, 0x3fd, 1, &v), 1);
    assert_int_equal(v, 0x51); /* offset 5, size 1, masked to one byte */
    assert_int_equal(ferry_pio_bus_read(bus, 0x3f9, 2, &v), 1);
    assert_int_equal(v, 0x0012);
    assert_int_equal(ferry_pio_bus_write(bus, 0x3fb, 1, 0x83), 1);
    assert_int_equal(a.last_off, 3);
    assert_int_equal(a.last_size, 1);
    assert_int_equal(a.last_val, 0x83);
    /* Just outside the range: unmapped, reads all-ones at the access size. */
    assert_int_equal(ferry_pio_bus_read(bus, 0x400, 1, &v), 0);
    assert_int_equal(v, 0xff);
    assert_int_equal(ferry_pio_bus_read(bus, 0x3f7, 4, &v), 0);
    assert_int_equal(v, 0xffffffffu);
    assert_int_equal(ferry_pio_bus_write(bus, 0x3f7, 1, 1), 0);
    assert_int_equal(a.writes, 1);
    ferry_pio_bus_destroy(bus);
}

static void test_overlap_and_unregister(void **state)
{
    (void)state;
    FerryError err = {0};
    Dev a = {0}, b = {0};
    FerryPioBus *bus = ferry_pio_bus_create(&err);
    assert_int_equal(ferry_pio_bus_register(bus, 0x60, 1, "kbd", NULL, dev_write, &a, &err), 0);
    assert_int_equal(ferry_pio_bus_register(bus, 0x70, 2, "rtc", NULL, dev_write, &b, &err), 0);
    assert_int_equal(ferry_pio_bus_register(bus, 0x6f, 2, "bad", NULL, NULL, NULL, &err), -EEXIST);
    assert_string_equal(err.msg, "bad: ports 0x6f-0x70 overlap rtc at 0x70-0x71");
    assert_int_equal(ferry_pio_bus_register(bus, 0x5f, 2, "bad2", NULL, NULL, NULL, &err), -EEXIST);
    assert_non_null(strstr(err.msg, "overlap kbd"));
    assert_int_equal(ferry_pio_bus_register(bus, 0xffff, 2, "wrap", NULL, NULL, NULL, &err),
                     -EINVAL);
    assert_int_equal(ferry_pio_bus_register(bus, 0x10, 0, "empty", NULL, NULL, NULL, &err),
                     -EINVAL);
    /* Adjacent ranges are fine; a NULL read handler reads all-ones but claims the port. */
    assert_int_equal(ferry_pio_bus_register(bus, 0x61, 0xf, "gap", NULL, NULL, NULL, &err), 0);
    uint32_t v;
    assert_int_equal(ferry_pio_bus_read(bus, 0x61, 1, &v), 1);
    assert_int_equal(v, 0xff);
    assert_int_equal(ferry_pio_bus_write(bus, 0x71, 1, 7), 1);
    assert_int_equal(b.last_off, 1);
    assert_int_equal(ferry_pio_bus_unregister(bus, 0x70, &err), 0);
    assert_int_equal(ferry_pio_bus_write(bus, 0x71, 1, 9), 0);
    assert_int_equal(b.writes, 1);
    assert_int_equal(ferry_pio_bus_unregister(bus, 0x70, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "0x70"));
    /* The freed range can be taken again. */
    assert_int_equal(ferry_pio_bus_register(bus, 0x70, 2, "rtc2", NULL, NULL, NULL, &err), 0);
    ferry_pio_bus_destroy(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_and_unmapped),
        cmocka_unit_test(test_overlap_and_unregister),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
