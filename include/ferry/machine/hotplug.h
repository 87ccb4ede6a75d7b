/* The guest side of the hotplug controller: a port-I/O register block (hotplug-regs.h,
 * docs/guest-interface.md) that the VMM maps on its PIO bus at FERRY_HP_IO_BASE. */
#ifndef FERRY_MACHINE_HOTPLUG_H
#define FERRY_MACHINE_HOTPLUG_H

#include "ferry/machine/hotplug-regs.h"
#include "ferry/machine/machine.h"

#include <stdint.h>

/* Accesses at `offset` (0 .. FERRY_HP_IO_SIZE-1) of `size` 1, 2 or 4 bytes. Undefined accesses
 * read as all-ones and writes to them are ignored (never an error, never a crash). */
uint32_t ferry_hotplug_io_read(FerryMachine *m, uint16_t offset, unsigned size);
void ferry_hotplug_io_write(FerryMachine *m, uint16_t offset, unsigned size, uint32_t value);

/* The same with an opaque FerryMachine pointer, matching the VMM's PIO handler signature. */
uint32_t ferry_hotplug_pio_read(void *machine, uint16_t offset, unsigned size);
void ferry_hotplug_pio_write(void *machine, uint16_t offset, unsigned size, uint32_t value);

#endif
