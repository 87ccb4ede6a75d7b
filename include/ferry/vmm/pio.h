/* Port-I/O bus: devices register port ranges with read/write callbacks; vCPU threads dispatch
 * KVM_EXIT_IO accesses to them. Unmapped ports read as all-ones and ignore writes (like ISA). */
#ifndef FERRY_VMM_PIO_H
#define FERRY_VMM_PIO_H

#include "ferry/error.h"

#include <stdint.h>

typedef struct FerryPioBus FerryPioBus;

/* Handlers run on a vCPU thread, possibly several at once for different vCPUs: a device that
 * keeps state locks it itself. `offset` is relative to the registered base; `size` is 1, 2 or 4.
 * A NULL read handler reads as all-ones; a NULL write handler ignores writes. */
typedef uint32_t (*FerryPioReadFn)(void *opaque, uint16_t offset, unsigned size);
typedef void (*FerryPioWriteFn)(void *opaque, uint16_t offset, unsigned size, uint32_t value);

/* Caller frees with ferry_pio_bus_destroy. Returns NULL only on allocation failure. */
FerryPioBus *ferry_pio_bus_create(FerryError *err);
/* Registered handlers are forgotten; their opaque pointers are not touched. NULL is a no-op. */
void ferry_pio_bus_destroy(FerryPioBus *bus);

/* Map [base, base + len) to the handlers. `name` (borrowed, must outlive the registration)
 * names the device in errors. Fails with -EEXIST naming both devices when ranges overlap, and
 * -EINVAL for an empty range or one past port 0xffff. Safe while vCPUs run (hotplug). */
int ferry_pio_bus_register(FerryPioBus *bus, uint16_t base, uint32_t len, const char *name,
                           FerryPioReadFn read, FerryPioWriteFn write, void *opaque,
                           FerryError *err);
/* Remove the range registered at exactly `base`. When this returns, no handler of that range
 * is running or will run. Returns -ENOENT when nothing is registered there. */
int ferry_pio_bus_unregister(FerryPioBus *bus, uint16_t base, FerryError *err);

/* Dispatch one access (what a vCPU thread does on KVM_EXIT_IO). Return 1 when a device claimed
 * the port, 0 when it is unmapped (reads then give all-ones). */
int ferry_pio_bus_read(FerryPioBus *bus, uint16_t port, unsigned size, uint32_t *value);
int ferry_pio_bus_write(FerryPioBus *bus, uint16_t port, unsigned size, uint32_t value);

#endif
