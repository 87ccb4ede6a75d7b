/* Register map of the hotplug controller's port-I/O block (docs/guest-interface.md is the spec).
 * Only #defines, so freestanding guest firmware can include it as well as the host. */
#ifndef FERRY_MACHINE_HOTPLUG_REGS_H
#define FERRY_MACHINE_HOTPLUG_REGS_H

#define FERRY_HP_IO_BASE 0x510 /* default port base */
#define FERRY_HP_IO_SIZE 0x80  /* ports base .. base + 0x7f */

#define FERRY_HP_MAGIC_VALUE   0x31504846u /* "FHP1" little-endian */
#define FERRY_HP_IFACE_VERSION 1u

/* Registers: 32-bit, little-endian, accessed with 4-byte I/O at these offsets. */
#define FERRY_HP_REG_MAGIC    0x00 /* R: FERRY_HP_MAGIC_VALUE */
#define FERRY_HP_REG_VERSION  0x04 /* R: FERRY_HP_IFACE_VERSION */
#define FERRY_HP_REG_CMD      0x08 /* W: run a command; R: its status (FERRY_HP_ST_*) */
#define FERRY_HP_REG_STATUS   0x08
#define FERRY_HP_REG_SELECTOR 0x0c /* RW: connector index (or position for ENUM) */
#define FERRY_HP_REG_ARG      0x10 /* RW: argument (target state for SET_STATE) */
#define FERRY_HP_REG_RESULT0  0x14 /* R: results of the last command */
#define FERRY_HP_REG_RESULT1  0x18
#define FERRY_HP_REG_RESULT2  0x1c
#define FERRY_HP_REG_PENDING  0x20 /* R: FERRY_HP_PENDING_* bits, no side effect */
#define FERRY_HP_REG_NCONN    0x24 /* R: number of connectors */
#define FERRY_HP_WINDOW       0x40 /* R: 64-byte token window, any size 1/2/4 */
#define FERRY_HP_WINDOW_SIZE  0x40
#define FERRY_HP_WINDOW_NAME  0x00 /* token name, NUL-terminated, at most 31 bytes + NUL */
#define FERRY_HP_WINDOW_VALUE 0x20 /* token value bytes, at most 32 */
#define FERRY_HP_NAME_MAX     32
#define FERRY_HP_VALUE_MAX    32

#define FERRY_HP_PENDING_EVENTS 0x1u /* the event queue is not empty */
#define FERRY_HP_PENDING_READY  0x2u /* the guest has declared itself ready */
#define FERRY_HP_PENDING_LINE   0x4u /* the notification line is asserted (EVENTS && READY) */

/* Commands (written to FERRY_HP_REG_CMD). */
#define FERRY_HP_CMD_READY       0x01 /* declare the guest ready (CAS analogue) */
#define FERRY_HP_CMD_FETCH_EVENT 0x02 /* pop one event: R0 action, R1 kind, R2 connector index */
#define FERRY_HP_CMD_ENUM        0x03 /* SELECTOR = n: R0 index, R1 kind of n-th configured */
#define FERRY_HP_CMD_GET_STATE   0x04 /* SELECTOR = index: R0 state, R1 flags, R2 kind */
#define FERRY_HP_CMD_SET_STATE   0x05 /* SELECTOR = index, ARG = target state */
#define FERRY_HP_CMD_CC_STEP     0x06 /* SELECTOR = index: R0 token, R1 name len, R2 value len */

/* Status codes (read from FERRY_HP_REG_STATUS). */
#define FERRY_HP_ST_OK             0
#define FERRY_HP_ST_EMPTY          1 /* no event to fetch / enumeration ended */
#define FERRY_HP_ST_NO_CONNECTOR   2 /* SELECTOR names no connector */
#define FERRY_HP_ST_BAD_STATE      3 /* not allowed in the connector's current state */
#define FERRY_HP_ST_NO_DEVICE      4 /* the connector is empty */
#define FERRY_HP_ST_UNPLUG_PENDING 5 /* refused: the host requested an unplug */
#define FERRY_HP_ST_BAD_COMMAND    6 /* unknown command code */
#define FERRY_HP_ST_BAD_ARG        7 /* ARG is not a valid target state */

/* GET_STATE flags (RESULT1). */
#define FERRY_HP_FLAG_PRESENT          0x1u
#define FERRY_HP_FLAG_UNPLUG_REQUESTED 0x2u
#define FERRY_HP_FLAG_SESSION          0x4u

/* Event actions (RESULT0 of FETCH_EVENT). */
#define FERRY_HP_ACTION_ADD    1
#define FERRY_HP_ACTION_REMOVE 2

/* Configure-connector tokens (RESULT0 of CC_STEP). */
#define FERRY_HP_TOK_NODE_START 1 /* name = node name */
#define FERRY_HP_TOK_PROP       2 /* name = property name, value = bytes */
#define FERRY_HP_TOK_NODE_END   3
#define FERRY_HP_TOK_DONE       4 /* connector is now configured; the session ended */

#endif
