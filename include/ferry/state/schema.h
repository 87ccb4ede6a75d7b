/* Registries of state descriptions and their JSON schema (docs/schema-format.md).
 * A registry maps (section name, instance id) to a description; it is an object, never a global,
 * so two machines (or a source and a destination) can live in one process. */
#ifndef FERRY_STATE_SCHEMA_H
#define FERRY_STATE_SCHEMA_H

#include "ferry/error.h"
#include "ferry/state/io.h"
#include "ferry/state/state.h"

#include <jansson.h>
#include <stdint.h>

#define FERRY_SCHEMA_FORMAT_VERSION 1

typedef struct FerryRegistry FerryRegistry;

/* Caller destroys with ferry_registry_free. */
FerryRegistry *ferry_registry_new(void);
void ferry_registry_free(FerryRegistry *reg);

/* Register `d` (borrowed: must outlive the registry) under a section name (copied) and
 * instance id, with the object it describes (`opaque`, borrowed, may be NULL for schema-only
 * registries). Checks the description; a duplicate (section, instance) is an error.
 * A registry is both the schema of a machine and the list of state a migration moves. */
int ferry_registry_add(FerryRegistry *reg, const char *section, uint32_t instance,
                       const FerryDesc *d, void *opaque, FerryError *err);
/* Remove an entry (device unplugged). -ENOENT if absent. */
int ferry_registry_remove(FerryRegistry *reg, const char *section, uint32_t instance);
/* Borrowed description or NULL; fills *opaque when `opaque` is not NULL. */
const FerryDesc *ferry_registry_find(const FerryRegistry *reg, const char *section,
                                     uint32_t instance, void **opaque);
size_t ferry_registry_count(const FerryRegistry *reg);
/* The i-th entry in (section, instance) order; returns the description (borrowed) and fills
 * the non-NULL out-parameters. */
const FerryDesc *ferry_registry_entry(const FerryRegistry *reg, size_t i, const char **section,
                                      uint32_t *instance, void **opaque);

/* JSON of one description (new reference, caller decrefs). */
json_t *ferry_schema_desc_to_json(const FerryDesc *d);
/* The whole registry: {"format": "ferry-schema", "format_version": 1, "machine": ...,
 * "sections": [...]}. `machine` may be NULL. New reference. */
json_t *ferry_schema_export(const FerryRegistry *reg, const char *machine);
/* Same, serialised stably (sorted sections, fixed key order, 2-space indent, final newline).
 * Caller frees. */
char *ferry_schema_dumps(const FerryRegistry *reg, const char *machine);

/* Descriptions rebuilt from schema JSON, so streams decode by field name without the binary
 * that wrote them (ferry analyze). Hooks and predicates are not recreated; presence bytes
 * and subsection frames make that unnecessary for decoding. */
typedef struct FerrySchema FerrySchema;
/* Caller frees with ferry_schema_free. Errors name the JSON path that is malformed. */
FerrySchema *ferry_schema_import(json_t *schema, FerryError *err);
void ferry_schema_free(FerrySchema *s);
/* Borrowed; NULL if absent. Registry view of the imported sections. */
const FerryRegistry *ferry_schema_registry(const FerrySchema *s);
const char *ferry_schema_machine(const FerrySchema *s);

/* Decode a payload described by `d` into JSON, field by field, without a C struct (the
 * analyzer's decoder; it shares the loader's primitives). New reference or NULL + err. */
json_t *ferry_state_decode_json(const FerryDesc *d, FerryIO *io, uint32_t version,
                                const FerryLoadOpts *opts, FerryError *err);

#endif
