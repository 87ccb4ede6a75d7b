/* Golden schemas (tests/compat/<machine>.json) against the current `ferry schema dump`, judged by
 * the schema checker's engine (src/tools/schema_rules.c, the rules of `ferry schema check`):
 * any error finding from golden -> current fails. A self-test mutates each golden file and
 * requires the gate, in process and through `ferry schema check --severity error`, to fail.
 * `test-compat --write-golden DIR` regenerates the files after a reviewed, compatible change. */
#include "ferry/machine/device.h"
#include "schema_check.h"
#include "schema_dump.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Error findings of golden -> current (forward: a golden build's stream loads on this one);
 * printed unless quiet. Returns -1 when a file does not load. */
static int gate(const char *golden_path, const char *current_path, bool quiet)
{
    FerryError err = {0};
    FerrySchemaDoc *old = ferry_schema_doc_load_file(golden_path, &err), *cur = NULL;
    if (old)
        cur = ferry_schema_doc_load_file(current_path, &err);
    FerrySchemaReport *rep = ferry_schema_report_new();
    int errors = -1;
    if (!old || !cur || !rep) {
        fprintf(stderr, "  %s\n", old && cur ? "out of memory" : err.msg);
    } else if (ferry_schema_compare(old, cur, FERRY_SCHEMA_FORWARD, rep, &err) < 0) {
        fprintf(stderr, "  %s\n", err.msg);
    } else {
        errors = 0;
        for (size_t i = 0; i < ferry_schema_report_count(rep); i++) {
            const FerrySchemaFinding *f = ferry_schema_report_finding(rep, i);
            if (f->severity != FERRY_SCHEMA_ERROR)
                continue;
            errors++;
            if (!quiet)
                fprintf(stderr, "  incompatible: %s%s%s [%s]: %s\n", f->section,
                        *f->path ? "." : "", f->path, f->rule, f->message);
        }
    }
    ferry_schema_report_free(rep);
    ferry_schema_doc_free(cur);
    ferry_schema_doc_free(old);
    return errors;
}

static int cli(const char *ferry, const char *golden_path, const char *current_path)
{
    char cmd[3072];
    snprintf(cmd, sizeof(cmd), "'%s' schema check --quiet --severity error '%s' '%s'", ferry,
             golden_path, current_path);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static bool dump(const char *machine, char *path)
{
    int fd = mkstemp(path);
    if (fd < 0)
        return false;
    close(fd);
    char *argv[] = {"dump", "--machine", (char *)machine, "-o", path, NULL};
    return ferry_schema_dump_main(5, argv) == 0;
}

static json_t *first_desc(json_t *doc)
{
    return json_object_get(json_array_get(json_object_get(doc, "sections"), 0), "description");
}

/* Each mutation of the golden file stands for an incompatible change of the current build. */
static const char *mutate(json_t *g, int which)
{
    json_t *d = first_desc(g), *fields = json_object_get(d, "fields");
    json_t *f0 = json_array_get(fields, 0);
    switch (which) {
    case 0: /* the build dropped a field: the golden one has one more */
        json_array_append_new(fields,
                              json_pack("{s:s, s:s, s:i, s:s, s:i, s:i}", "name", "gone", "type",
                                        "u32", "size", 4, "array", "none", "count", 0, "since", 0));
        return "field removed";
    case 1: /* the build lowered the version */
        json_object_set_new(d, "version",
                            json_integer(json_integer_value(json_object_get(d, "version")) + 5));
        return "version lowered";
    case 2: { /* the build retyped a field */
        bool was64 = !strcmp(json_string_value(json_object_get(f0, "type")), "u64");
        json_object_set_new(f0, "type", json_string(was64 ? "u16" : "u64"));
        json_object_set_new(f0, "size", json_integer(was64 ? 2 : 8));
        return "field retyped";
    }
    case 3: /* the build added a field without a version bump */
        json_array_remove(fields, json_array_size(fields) - 1);
        return "field added without a version bump";
    case 4: /* the build lost a section */
        json_array_append_new(json_object_get(g, "sections"),
                              json_pack("{s:s, s:i, s:O}", "section", "gone-device", "instance", 0,
                                        "description", d));
        return "section removed";
    }
    return NULL;
}

/* The gate must be able to fail: every mutated golden file is refused, in process and by the
 * CLI. Returns the number of mutations that slipped through. */
static int self_test(const char *ferry, const char *golden_path, const char *current_path)
{
    int missed = 0;
    for (int which = 0;; which++) {
        json_error_t je;
        json_t *g = json_load_file(golden_path, 0, &je);
        const char *what = g ? mutate(g, which) : NULL;
        if (!what) {
            json_decref(g);
            return g ? missed : missed + 1;
        }
        char path[] = "/tmp/ferry-compat-golden-XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0 || (close(fd), json_dump_file(g, path, JSON_INDENT(2))) != 0) {
            missed++;
        } else {
            int errors = gate(path, current_path, true);
            if (errors <= 0) {
                fprintf(stderr, "  self-test: %s not detected by the engine\n", what);
                missed++;
            }
            int rc = ferry ? cli(ferry, path, current_path) : 1;
            if (rc != 1) {
                fprintf(stderr, "  self-test: %s: ferry schema check exit status %d, not 1\n", what,
                        rc);
                missed++;
            }
        }
        unlink(path);
        json_decref(g);
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-golden")) {
        for (size_t i = 0; ferry_machine_type_at(i); i++) {
            char out[1024];
            snprintf(out, sizeof(out), "%s/%s.json", argv[2], ferry_machine_type_at(i)->name);
            char *a[] = {"dump", "--machine", (char *)ferry_machine_type_at(i)->name,
                         "-o",   out,         NULL};
            if (ferry_schema_dump_main(5, a) != 0)
                return 1;
            printf("wrote %s\n", out);
        }
        return 0;
    }
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: test-compat GOLDEN_DIR [FERRY_BINARY] | --write-golden DIR\n");
        return 2;
    }
    const char *ferry = argc == 3 ? argv[2] : NULL;
    int failed = 0;
    for (size_t i = 0; ferry_machine_type_at(i); i++) {
        const char *name = ferry_machine_type_at(i)->name;
        char golden_path[1024], current[] = "/tmp/ferry-compat-XXXXXX";
        snprintf(golden_path, sizeof(golden_path), "%s/%s.json", argv[1], name);
        if (!dump(name, current)) {
            fprintf(stderr, "%s: ferry schema dump failed\n", name);
            unlink(current);
            return 1;
        }
        int errors = gate(golden_path, current, false);
        if (errors != 0) {
            fprintf(stderr, "%s: %s against %s\n", name,
                    errors < 0 ? "cannot compare" : "incompatible change(s)", golden_path);
            failed = 1;
        } else {
            json_error_t je;
            json_t *a = json_load_file(golden_path, 0, &je), *b = json_load_file(current, 0, &je);
            printf(json_equal(a, b) ? "%s: identical to %s\n"
                                    : "%s: compatible with %s, but it changed: review and run "
                                      "test-compat --write-golden tests/compat\n",
                   name, golden_path);
            json_decref(a);
            json_decref(b);
        }
        if (ferry && cli(ferry, golden_path, current) != 0) {
            fprintf(stderr, "%s: ferry schema check --severity error %s -> current failed\n", name,
                    golden_path);
            failed = 1;
        }
        int missed = self_test(ferry, golden_path, current);
        if (missed) {
            fprintf(stderr, "%s: self-test: %d mutation(s) of the golden file not refused\n", name,
                    missed);
            failed = 1;
        }
        unlink(current);
    }
    return failed;
}
