/* Golden schemas (tests/compat/<machine>.json) against the current `ferry schema dump`: fails
 * when a section, field or subsection disappears, a field changes type or size, a version goes
 * down, min_version rises above the golden version, or a field appears without a version bump.
 * `test-compat --write-golden DIR` regenerates the files after a reviewed, compatible change. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/machine/device.h"
#include "schema_dump.h"

static int problems;
static bool quiet; /* the self-test expects problems: do not print them */

static void problem(const char *path, const char *fmt, const char *a, long x, long y)
{
    problems++;
    if (quiet)
        return;
    fprintf(stderr, "  incompatible: %s: ", path);
    fprintf(stderr, fmt, a, x, y);
    fputc('\n', stderr);
}

static long num(const json_t *o, const char *k) { return (long)json_integer_value(json_object_get(o, k)); }
static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static const json_t *find_named(const json_t *arr, const char *key, const char *name, size_t *at)
{
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i);
        const json_t *holder = strcmp(key, "subsection") ? e : json_object_get(e, "description");
        if (!strcmp(str(holder, "name"), name)) {
            if (at)
                *at = i;
            return e;
        }
    }
    return NULL;
}

static void check_desc(const json_t *old, const json_t *new, const char *path);

static void check_field(const json_t *of, const json_t *nf, const char *path)
{
    static const char *same[] = {"type", "array", "count_field"};
    for (size_t i = 0; i < 3; i++)
        if (!json_equal(json_object_get(of, same[i]), json_object_get(nf, same[i])))
            problem(path, "%s changed", same[i], 0, 0);
    if (num(of, "size") != num(nf, "size"))
        problem(path, "%ssize %ld -> %ld", "", num(of, "size"), num(nf, "size"));
    if (num(of, "count") != num(nf, "count"))
        problem(path, "%scount %ld -> %ld", "", num(of, "count"), num(nf, "count"));
    if (num(nf, "since") > num(of, "since") && !json_is_true(json_object_get(of, "exists")))
        problem(path, "%ssince raised %ld -> %ld", "", num(of, "since"), num(nf, "since"));
    const json_t *od = json_object_get(of, "description"), *nd = json_object_get(nf, "description");
    if (json_is_object(od)) {
        if (!json_is_object(nd))
            problem(path, "%selement description removed", "", 0, 0);
        else
            check_desc(od, nd, path);
    }
}

static void check_desc(const json_t *old, const json_t *new, const char *path)
{
    char p[512];
    long over = num(old, "version"), nver = num(new, "version");
    if (strcmp(str(old, "name"), str(new, "name")))
        problem(path, "description renamed from '%s' (%ld %ld)", str(old, "name"), 0, 0);
    if (nver < over)
        problem(path, "%sversion lowered %ld -> %ld", "", over, nver);
    if (num(new, "min_version") > over)
        problem(path, "%smin_version %ld above the golden version %ld: its streams are refused", "",
                num(new, "min_version"), over);
    const json_t *ofs = json_object_get(old, "fields"), *nfs = json_object_get(new, "fields");
    size_t last = 0;
    for (size_t i = 0; i < json_array_size(ofs); i++) {
        const json_t *of = json_array_get(ofs, i);
        snprintf(p, sizeof(p), "%s.%s", path, str(of, "name"));
        size_t at;
        const json_t *nf = find_named(nfs, "field", str(of, "name"), &at);
        if (!nf) {
            problem(p, "%sfield removed", "", 0, 0);
            continue;
        }
        if (at < last)
            problem(p, "%sfield moved before another golden field", "", 0, 0);
        last = at;
        check_field(of, nf, p);
    }
    for (size_t i = 0; i < json_array_size(nfs); i++) {
        const json_t *nf = json_array_get(nfs, i);
        if (find_named(ofs, "field", str(nf, "name"), NULL))
            continue;
        snprintf(p, sizeof(p), "%s.%s", path, str(nf, "name"));
        if (num(nf, "since") <= over && !json_is_true(json_object_get(nf, "exists")))
            problem(p, "%sfield added without a version bump (since %ld, golden version %ld)", "",
                    num(nf, "since"), over);
    }
    const json_t *oss = json_object_get(old, "subsections"), *nss = json_object_get(new, "subsections");
    for (size_t i = 0; i < json_array_size(oss); i++) {
        const json_t *od = json_object_get(json_array_get(oss, i), "description");
        snprintf(p, sizeof(p), "%s/%s", path, str(od, "name"));
        const json_t *ns = find_named(nss, "subsection", str(od, "name"), NULL);
        if (!ns)
            problem(p, "%ssubsection removed: streams that carry it are refused", "", 0, 0);
        else
            check_desc(od, json_object_get(ns, "description"), p);
    }
}

/* Count incompatibilities of `new` against the golden `old` documents. */
static int check(const json_t *old, const json_t *new)
{
    problems = 0;
    if (num(old, "format_version") != num(new, "format_version"))
        problem("(document)", "%sformat_version %ld -> %ld", "", num(old, "format_version"),
                num(new, "format_version"));
    const json_t *osec = json_object_get(old, "sections"), *nsec = json_object_get(new, "sections");
    for (size_t i = 0; i < json_array_size(osec); i++) {
        const json_t *os = json_array_get(osec, i);
        const json_t *ns = NULL;
        for (size_t k = 0; k < json_array_size(nsec); k++) {
            const json_t *c = json_array_get(nsec, k);
            if (!strcmp(str(c, "section"), str(os, "section")) && num(c, "instance") == num(os, "instance"))
                ns = c;
        }
        char p[256];
        snprintf(p, sizeof(p), "%s", str(os, "section"));
        if (!ns)
            problem(p, "%ssection removed or renamed (instance %ld)%.0ld", "", num(os, "instance"), 0);
        else
            check_desc(json_object_get(os, "description"), json_object_get(ns, "description"), p);
    }
    return problems;
}

static json_t *dump(const char *machine, char **text)
{
    char path[] = "/tmp/ferry-compat-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    close(fd);
    char *argv[] = {"dump", "--machine", (char *)machine, "-o", path, NULL};
    if (ferry_schema_dump_main(5, argv) != 0) {
        unlink(path);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (text) {
        FILE *f = fopen(path, "r");
        size_t cap = 1 << 20;
        *text = calloc(1, cap);
        size_t n = fread(*text, 1, cap - 1, f);
        (*text)[n] = 0;
        fclose(f);
    }
    unlink(path);
    return j;
}

/* The full checker (`ferry schema check`, golden -> current) must agree: no error finding. */
static bool ferry_check(const char *ferry, const char *golden_path, const char *machine)
{
    char path[] = "/tmp/ferry-compat-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return false;
    close(fd);
    char *argv[] = {"dump", "--machine", (char *)machine, "-o", path, NULL};
    if (ferry_schema_dump_main(5, argv) != 0) {
        unlink(path);
        return false;
    }
    char cmd[3072];
    snprintf(cmd, sizeof(cmd), "'%s' schema check --severity error '%s' '%s'", ferry, golden_path,
             path);
    int rc = system(cmd);
    unlink(path);
    if (rc != 0)
        fprintf(stderr, "%s: ferry schema check %s -> current: exit status %d\n", machine,
                golden_path, rc);
    return rc == 0;
}

/* The checker must be able to fail: each mutation of the current dump is caught. */
static int self_test(const json_t *cur)
{
    int bad = 0;
    json_t *m;
    quiet = true;
    /* 1: field removed */
    m = json_deep_copy(cur);
    json_t *sec0 = json_object_get(json_array_get(json_object_get(m, "sections"), 0), "description");
    json_array_remove(json_object_get(sec0, "fields"), 0);
    bad += check(cur, m) == 0;
    json_decref(m);
    /* 2: version lowered */
    m = json_deep_copy(cur);
    sec0 = json_object_get(json_array_get(json_object_get(m, "sections"), 0), "description");
    json_object_set_new(sec0, "version", json_integer(0));
    bad += check(cur, m) == 0;
    json_decref(m);
    /* 3: retyped field */
    m = json_deep_copy(cur);
    sec0 = json_object_get(json_array_get(json_object_get(m, "sections"), 0), "description");
    json_object_set_new(json_array_get(json_object_get(sec0, "fields"), 0), "type", json_string("u64"));
    json_object_set_new(json_array_get(json_object_get(sec0, "fields"), 0), "size", json_integer(8));
    bad += check(cur, m) == 0;
    json_decref(m);
    /* 4: field appended without a bump */
    m = json_deep_copy(cur);
    sec0 = json_object_get(json_array_get(json_object_get(m, "sections"), 0), "description");
    json_array_append_new(json_object_get(sec0, "fields"),
                          json_pack("{s:s, s:s, s:i, s:s, s:i, s:i}", "name", "extra", "type", "u32",
                                    "size", 4, "array", "none", "count", 0, "since", 0));
    bad += check(cur, m) == 0;
    json_decref(m);
    quiet = false;
    if (bad)
        fprintf(stderr, "self-test: %d mutation(s) not detected\n", bad);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-golden")) {
        for (size_t i = 0; ferry_machine_type_at(i); i++) {
            char out[1024];
            snprintf(out, sizeof(out), "%s/%s.json", argv[2], ferry_machine_type_at(i)->name);
            char *a[] = {"dump", "--machine", (char *)ferry_machine_type_at(i)->name, "-o", out, NULL};
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
    int failed = 0;
    for (size_t i = 0; ferry_machine_type_at(i); i++) {
        const char *name = ferry_machine_type_at(i)->name;
        char golden_path[1024];
        snprintf(golden_path, sizeof(golden_path), "%s/%s.json", argv[1], name);
        json_error_t je;
        json_t *golden = json_load_file(golden_path, 0, &je);
        char *text = NULL;
        json_t *cur = dump(name, &text);
        if (!golden || !cur) {
            fprintf(stderr, "%s: cannot load golden (%s) or dump\n", name, golden ? "ok" : je.text);
            return 1;
        }
        int n = check(golden, cur);
        if (n) {
            fprintf(stderr, "%s: %d incompatible change(s) against %s\n", name, n, golden_path);
            failed = 1;
        } else if (!json_equal(golden, cur)) {
            printf("%s: compatible with the golden schema, but it changed: review and run "
                   "test-compat --write-golden tests/compat\n", name);
        } else {
            printf("%s: identical to the golden schema\n", name);
        }
        failed |= self_test(cur);
        if (argc == 3 && !ferry_check(argv[2], golden_path, name))
            failed = 1;
        free(text);
        json_decref(golden);
        json_decref(cur);
    }
    return failed;
}
