/* Port-I/O bus: a sorted table of port ranges behind a read-write lock, so devices can be
 * (un)registered at runtime while vCPU threads dispatch accesses concurrently. */
#include "ferry/vmm/pio.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct PioRange {
    uint16_t base;
    uint32_t len;
    const char *name;
    FerryPioReadFn read;
    FerryPioWriteFn write;
    void *opaque;
} PioRange;

struct FerryPioBus {
    pthread_rwlock_t lock;
    PioRange *ranges; /* sorted by base, non-overlapping */
    size_t count, cap;
};

FerryPioBus *ferry_pio_bus_create(FerryError *err)
{
    FerryPioBus *bus = calloc(1, sizeof(*bus));
    if (!bus) {
        ferry_error_set(err, -ENOMEM, "port-I/O bus: out of memory");
        return NULL;
    }
    /* Writer preference: a hotplug (un)registration must not starve behind a guest that
     * exits on port I/O continuously. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&bus->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return bus;
}

void ferry_pio_bus_destroy(FerryPioBus *bus)
{
    if (!bus)
        return;
    pthread_rwlock_destroy(&bus->lock);
    free(bus->ranges);
    free(bus);
}

int ferry_pio_bus_register(FerryPioBus *bus, uint16_t base, uint32_t len, const char *name,
                           FerryPioReadFn read, FerryPioWriteFn write, void *opaque,
                           FerryError *err)
{
    if (!len || (uint32_t)base + len > 0x10000)
        return ferry_error_set(err, -EINVAL, "%s: port range 0x%x+%u is empty or past 0xffff", name,
                               base, len);
    int r = 0;
    pthread_rwlock_wrlock(&bus->lock);
    size_t at = 0;
    while (at < bus->count && bus->ranges[at].base < base)
        at++;
    const PioRange *prev = at ? &bus->ranges[at - 1] : NULL;
    const PioRange *next = at < bus->count ? &bus->ranges[at] : NULL;
    const PioRange *clash = prev && (uint32_t)prev->base + prev->len > base ? prev
                            : next && next->base < (uint32_t)base + len     ? next
                                                                            : NULL;
    if (clash) {
        r = ferry_error_set(err, -EEXIST, "%s: ports 0x%x-0x%x overlap %s at 0x%x-0x%x", name, base,
                            base + len - 1, clash->name, clash->base, clash->base + clash->len - 1);
        goto out_unlock;
    }
    if (bus->count == bus->cap) {
        size_t cap = bus->cap ? bus->cap * 2 : 8;
        PioRange *n = realloc(bus->ranges, cap * sizeof(*n));
        if (!n) {
            r = ferry_error_set(err, -ENOMEM, "%s: out of memory registering ports", name);
            goto out_unlock;
        }
        bus->ranges = n;
        bus->cap = cap;
    }
    memmove(&bus->ranges[at + 1], &bus->ranges[at], (bus->count - at) * sizeof(PioRange));
    bus->ranges[at] = (PioRange){base, len, name, read, write, opaque};
    bus->count++;
out_unlock:
    pthread_rwlock_unlock(&bus->lock);
    return r;
}

int ferry_pio_bus_unregister(FerryPioBus *bus, uint16_t base, FerryError *err)
{
    int r = -ENOENT;
    pthread_rwlock_wrlock(&bus->lock);
    for (size_t i = 0; i < bus->count; i++) {
        if (bus->ranges[i].base == base) {
            memmove(&bus->ranges[i], &bus->ranges[i + 1], (bus->count - i - 1) * sizeof(PioRange));
            bus->count--;
            r = 0;
            break;
        }
    }
    pthread_rwlock_unlock(&bus->lock);
    if (r < 0)
        return ferry_error_set(err, r, "port-I/O bus: nothing registered at 0x%x", base);
    return 0;
}

/* Binary search; caller holds the lock. */
static const PioRange *lookup(const FerryPioBus *bus, uint16_t port)
{
    size_t lo = 0, hi = bus->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const PioRange *r = &bus->ranges[mid];
        if (port < r->base)
            hi = mid;
        else if (port >= (uint32_t)r->base + r->len)
            lo = mid + 1;
        else
            return r;
    }
    return NULL;
}

int ferry_pio_bus_read(FerryPioBus *bus, uint16_t port, unsigned size, uint32_t *value)
{
    uint32_t ones = size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
    pthread_rwlock_rdlock(&bus->lock);
    const PioRange *r = lookup(bus, port);
    *value = r && r->read ? r->read(r->opaque, (uint16_t)(port - r->base), size) & ones : ones;
    pthread_rwlock_unlock(&bus->lock);
    return r != NULL;
}

int ferry_pio_bus_write(FerryPioBus *bus, uint16_t port, unsigned size, uint32_t value)
{
    pthread_rwlock_rdlock(&bus->lock);
    const PioRange *r = lookup(bus, port);
    if (r && r->write)
        r->write(r->opaque, (uint16_t)(port - r->base), size, value);
    pthread_rwlock_unlock(&bus->lock);
    return r != NULL;
}
