/* Fuzzes the machine model's two inputs from outside: the guest's register accesses (mixed with
 * host actions) and an incoming device-state stream. Invariants: no crash, no assert, the line
 * level always equals PENDING.LINE, clones are equal and hash equal. First byte bit 7 selects
 * the stream mode. */
#include "ferry/machine/guest.h"
#include "ferry/machine/hotplug.h"
#include "ferry/machine/machine.h"
#include "ferry/stream/stream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const devices[] = {"card,id=c1,slot=1", "mem-block,id=m0,slot=0"};
static const char *const extra[] = {"card,id=c2,slot=2", "cpu,id=cpu1,slot=1",
                                    "mem-block,id=m1,slot=1", "card,id=c1,slot=3"};
static const char *const ids[] = {"c1", "c2", "cpu1", "m0", "m1", "cpu0"};

static FerryMachine *machine(bool incoming, bool old)
{
    FerryMachineConfig cfg = {.type = old ? "ferry-1.0" : "ferry-2.0",
                              .boot_cpus = 1,
                              .incoming = incoming,
                              .devices = devices,
                              .ndevices = 2};
    FerryMachine *m = ferry_machine_new(&cfg, NULL);
    if (!m)
        abort();
    if (!incoming)
        ferry_machine_run_event(m, FERRY_RUN_EV_CONT, NULL);
    return m;
}

static void check(FerryMachine *m)
{
    bool line = ferry_hotplug_io_read(m, FERRY_HP_REG_PENDING, 4) & FERRY_HP_PENDING_LINE;
    if (line != ferry_machine_irq_level(m))
        __builtin_trap();
}

static void stream_mode(const uint8_t *data, size_t size, bool old)
{
    FerryMachine *m = machine(true, old);
    ferry_machine_incoming_prepare(m);
    FerryRegistry *reg = ferry_machine_registry(m, NULL);
    FerryIO *io = ferry_io_mem_reader(data, size);
    FerryError err = {0};
    FerryStreamReader *r = ferry_stream_reader_new(io, &err);
    if (r && ferry_stream_read_registry(r, reg, NULL, &err) == 0 &&
        ferry_machine_incoming_finish(m, &err) == 0) {
        ferry_machine_run_event(m, FERRY_RUN_EV_INCOMING_RUN, NULL);
        /* whatever was accepted, the guest can run against it without tripping an assert */
        FerryGuest *g = ferry_guest_new(m);
        ferry_guest_run(g, 500);
        check(m);
        ferry_guest_free(g);
    }
    ferry_stream_reader_free(r);
    ferry_io_destroy(io);
    ferry_registry_free(reg);
    ferry_machine_free(m);
}

static void regs_mode(const uint8_t *data, size_t size, bool old)
{
    FerryMachine *m = machine(false, old);
    FerryGuest *g = ferry_guest_new(m);
    for (size_t i = 0; i + 6 <= size; i += 6) {
        const uint8_t *b = data + i;
        uint32_t v = b[2] | b[3] << 8 | b[4] << 16 | (uint32_t)b[5] << 24;
        switch (b[0] % 10) {
        case 0:
            ferry_hotplug_io_read(m, b[1], b[2] % 5);
            break;
        case 1:
            ferry_hotplug_io_write(m, b[1], b[2] % 5, v);
            break;
        case 2: /* a well-formed command on a plausible connector */
            ferry_hotplug_io_write(m, FERRY_HP_REG_SELECTOR, 4,
                                   b[2] & 0x80 ? v : FERRY_CONN_INDEX(1 + b[2] % 3, b[3] % 5));
            ferry_hotplug_io_write(m, FERRY_HP_REG_ARG, 4, b[4] % 6);
            ferry_hotplug_io_write(m, FERRY_HP_REG_CMD, 4, b[1] % 8);
            break;
        case 3:
            ferry_machine_device_add_opts(m, extra[b[1] % 4], NULL);
            break;
        case 4:
            ferry_machine_device_del(m, ids[b[1] % 6], NULL);
            break;
        case 5:
            ferry_machine_run_event(m, (FerryRunEvent)(b[1] % FERRY_RUN_EV__COUNT), NULL);
            break;
        case 6:
            ferry_guest_step(g);
            break;
        case 7:
            ferry_machine_set_migration_active(m, b[1] & 1);
            break;
        case 8: {
            FerryMachine *c = ferry_machine_clone(m);
            if (!ferry_machine_equal(m, c) || ferry_machine_hash(m) != ferry_machine_hash(c))
                __builtin_trap();
            ferry_machine_free(c);
            break;
        }
        case 9:
            ferry_guest_reboot(g);
            break;
        }
        check(m);
    }
    ferry_guest_free(g);
    ferry_machine_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 0x80)
        stream_mode(data + 1, size - 1, data[0] & 1);
    else
        regs_mode(data + 1, size - 1, data[0] & 1);
    return 0;
}
