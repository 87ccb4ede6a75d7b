/* Opening KVM fails with messages that say why: no such device, not a KVM device, bad RAM
 * size. Runs without /dev/kvm (the paths used are never KVM). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first */
#include "ferry/vmm/vm.h"

#include <errno.h>
#include <string.h>

#include <cmocka.h>

static void test_missing_device(void **state)
{
    (void)state;
    FerryError err = {0};
    FerryVmConfig cfg = {.ram_size = 1 << 20, .kvm_path = "/nonexistent/kvm"};
    assert_null(ferry_vm_create(&cfg, &err));
    assert_int_equal(err.code, -ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent/kvm: no such device: KVM is not available"));
}

static void test_not_a_kvm_device(void **state)
{
    (void)state;
    FerryError err = {0};
    FerryVmConfig cfg = {.ram_size = 1 << 20, .kvm_path = "/dev/null"};
    assert_null(ferry_vm_create(&cfg, &err));
    assert_int_equal(err.code, -ENODEV);
    assert_non_null(strstr(err.msg, "/dev/null: not a KVM device"));
}

static void test_bad_ram_size(void **state)
{
    (void)state;
    FerryError err = {0};
    FerryVmConfig cfg = {.ram_size = 4097, .kvm_path = "/nonexistent/kvm"};
    assert_null(ferry_vm_create(&cfg, &err));
    assert_int_equal(err.code, -EINVAL);
    assert_non_null(strstr(err.msg, "RAM size 4097"));
    cfg.ram_size = 0;
    assert_null(ferry_vm_create(&cfg, &err));
    assert_int_equal(err.code, -EINVAL);
}

static void test_dirty_bitmap_size(void **state)
{
    (void)state;
    assert_int_equal(ferry_vm_dirty_bitmap_size(4096), 8);
    assert_int_equal(ferry_vm_dirty_bitmap_size(64 * 4096), 8);
    assert_int_equal(ferry_vm_dirty_bitmap_size(65 * 4096), 16);
    assert_int_equal(ferry_vm_dirty_bitmap_size(512ULL << 20), (512ULL << 20) / 4096 / 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_device),
        cmocka_unit_test(test_not_a_kvm_device),
        cmocka_unit_test(test_bad_ram_size),
        cmocka_unit_test(test_dirty_bitmap_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
