/* 16550-compatible UART (COM1 at 0x3f8, IRQ 4): enough of THR/RBR, IER, IIR, LCR, MCR, LSR,
 * MSR, SCR and the divisor latch for boot sectors and simple firmware. */
#ifndef FERRY_VMM_SERIAL_H
#define FERRY_VMM_SERIAL_H

#include "ferry/error.h"
#include "ferry/vmm/vm.h"

#include <stddef.h>
#include <stdint.h>

#define FERRY_SERIAL_COM1_BASE 0x3f8
#define FERRY_SERIAL_COM1_IRQ  4

typedef struct FerrySerial FerrySerial;

/* Register the UART on the VM's port-I/O bus at `base` driving GSI `irq`. Guest output goes to
 * `out_fd` (borrowed; not closed), line-buffered: written at each newline, when the buffer
 * fills, and on ferry_serial_flush. Caller frees with ferry_serial_destroy. */
FerrySerial *ferry_serial_create(FerryVm *vm, uint16_t base, uint32_t irq, int out_fd,
                                 FerryError *err);
/* Flushes, unregisters from the bus. Pause vCPUs (or know they do not touch it) first. */
void ferry_serial_destroy(FerrySerial *serial);

/* Write buffered output now (a run loop calls this periodically so output without newlines,
 * like the boot-sector guest's 'B's, still shows). Thread-safe. */
int ferry_serial_flush(FerrySerial *serial, FerryError *err);
/* Queue bytes for the guest to read (RBR), raising the receive interrupt if enabled. The FIFO
 * holds 16 bytes; returns how many were accepted (the caller retries the rest later). */
size_t ferry_serial_input(FerrySerial *serial, const uint8_t *data, size_t len);
/* Bytes the guest has written so far (statistics, tests). */
uint64_t ferry_serial_tx_count(FerrySerial *serial);

#endif
