/* Handshake data (DESIGN §5): machine type and device inventory (id, model id, effective
 * parameters), its JSON form, and a comparison that lists every mismatch at once. */
#ifndef FERRY_MACHINE_INVENTORY_H
#define FERRY_MACHINE_INVENTORY_H

#include "ferry/error.h"
#include "ferry/machine/machine.h"

#include <jansson.h>
#include <stddef.h>

typedef struct FerryInventory FerryInventory;

/* Snapshot of `m` (caller frees). Parameters are the effective values after defaults and compat
 * properties, in canonical text, so equal configurations compare equal. */
FerryInventory *ferry_machine_inventory(const FerryMachine *m);
void ferry_inventory_free(FerryInventory *inv);
const char *ferry_inventory_machine(const FerryInventory *inv); /* borrowed */
size_t ferry_inventory_count(const FerryInventory *inv);

/* {"machine": "ferry-2.0", "devices": [{"id", "driver", "model", "params": {name: text}}]}.
 * New reference. */
json_t *ferry_inventory_to_json(const FerryInventory *inv);
/* Parses outside input: every malformed member is an error naming its JSON path. */
FerryInventory *ferry_inventory_from_json(const json_t *j, FerryError *err);

/* Compare what the source runs (`src`) with what this destination has built (`dst`). Returns the
 * number of mismatches (0: the destination can host the source); with `report` non-NULL, sets
 * it to one line per mismatch (caller frees; NULL when there are none). Mismatches: machine
 * type, a model this binary does not know, a device missing on the destination, a different
 * model or parameter value, a device only on the destination. */
int ferry_inventory_compare(const FerryInventory *src, const FerryInventory *dst, char **report);
/* 0, or -EPROTO with "handshake refused: N mismatch(es): <first>; <second>; ...". */
int ferry_inventory_check(const FerryInventory *src, const FerryInventory *dst, FerryError *err);

#endif
