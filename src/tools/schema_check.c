/* `ferry schema check OLD NEW`: loads two schemas, runs the rule engine in the requested
 * directions and prints the findings for people (default) or tools (--json). */
#include "schema_check.h"

#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferry schema check [options] OLD NEW\n\n"
            "Report every difference between two device-state schemas that breaks migration\n"
            "from OLD to NEW (and with --both, from NEW back to OLD). OLD and NEW are QEMU\n"
            "-dump-vmstate files or Ferry schema files (ferry schema dump); the format is\n"
            "detected. Findings are errors (migration breaks), warnings (it may break) or\n"
            "info (a compatible change worth knowing).\n\n"
            "options:\n"
            "  --both            check OLD -> NEW and NEW -> OLD\n"
            "  --reverse         check NEW -> OLD only (like vmstate-static-checker --reverse)\n"
            "  --json            machine-readable report on stdout\n"
            "  -q, --quiet       print nothing; the exit status is the answer\n"
            "  --strict          warnings also make the result incompatible\n"
            "  --severity LEVEL  show findings of LEVEL and above: info (default), warning, "
            "error\n"
            "  -h, --help        this text\n\n"
            "exit status: 0 compatible, 1 incompatible, 2 usage or input error\n");
}

static const char *format_name(const FerrySchemaDoc *d)
{
    return ferry_schema_doc_format(d) == FERRY_SCHEMA_FORMAT_QEMU ? "qemu" : "ferry";
}

static void print_location(FILE *out, const FerrySchemaFinding *f, bool ferry)
{
    if (!f->section[0]) {
        fputs("(document)", out);
        return;
    }
    fputs(f->section, out);
    if (ferry && f->instance)
        fprintf(out, "[%u]", f->instance);
    if (f->path[0])
        fprintf(out, ": %s", f->path);
}

static void print_text(FILE *out, const char *const paths[2], const FerrySchemaDoc *old,
                       const FerrySchemaDoc *new_, const FerrySchemaReport *rep, const bool dirs[2],
                       FerrySchemaSeverity min, bool strict)
{
    const FerrySchemaDoc *docs[2] = {old, new_};
    const char *labels[2] = {"OLD", "NEW"};
    bool ferry = ferry_schema_doc_format(old) == FERRY_SCHEMA_FORMAT_FERRY;
    for (int i = 0; i < 2; i++) {
        const char *m = ferry_schema_doc_machine(docs[i]);
        fprintf(out, "%s: %s (%s, machine %s, %zu sections)\n", labels[i], paths[i],
                format_name(docs[i]), m ? m : "unknown", ferry_schema_doc_count(docs[i]));
    }
    for (int d = 0; d < 2; d++) {
        if (!dirs[d])
            continue;
        FerrySchemaDirection dir = (FerrySchemaDirection)d;
        fprintf(out, "\n%s (%s): %zu errors, %zu warnings, %zu info\n",
                ferry_schema_direction_name(dir), d == 0 ? "OLD -> NEW" : "NEW -> OLD",
                ferry_schema_report_tally(rep, dir, FERRY_SCHEMA_ERROR),
                ferry_schema_report_tally(rep, dir, FERRY_SCHEMA_WARNING),
                ferry_schema_report_tally(rep, dir, FERRY_SCHEMA_INFO));
        for (size_t i = 0; i < ferry_schema_report_count(rep); i++) {
            const FerrySchemaFinding *f = ferry_schema_report_finding(rep, i);
            if (f->direction != dir || f->severity < min)
                continue;
            fprintf(out, "  %-7s ", ferry_schema_severity_name(f->severity));
            print_location(out, f, ferry);
            fprintf(out, ": %s [%s]\n          %s.", f->message, f->rule, f->why);
            if (f->fix[0])
                fprintf(out, " Fix: %s.", f->fix);
            fputc('\n', out);
        }
    }
    size_t bad = 0;
    for (int d = 0; d < 2; d++) {
        if (!dirs[d])
            continue;
        bad += ferry_schema_report_tally(rep, (FerrySchemaDirection)d, FERRY_SCHEMA_ERROR);
        if (strict)
            bad += ferry_schema_report_tally(rep, (FerrySchemaDirection)d, FERRY_SCHEMA_WARNING);
    }
    fprintf(out, "\nresult: %s\n", bad ? "incompatible" : "compatible");
}

static json_t *doc_json(const char *path, const FerrySchemaDoc *d)
{
    const char *m = ferry_schema_doc_machine(d);
    return json_pack("{s:s, s:s, s:o, s:I}", "file", path, "format", format_name(d), "machine",
                     m ? json_string(m) : json_null(), "sections",
                     (json_int_t)ferry_schema_doc_count(d));
}

static int print_json(FILE *out, const char *const paths[2], const FerrySchemaDoc *old,
                      const FerrySchemaDoc *new_, const FerrySchemaReport *rep, const bool dirs[2],
                      FerrySchemaSeverity min, bool compatible)
{
    bool ferry = ferry_schema_doc_format(old) == FERRY_SCHEMA_FORMAT_FERRY;
    json_t *root = json_object(), *summary = json_object(), *findings = json_array(),
           *dl = json_array();
    if (!root || !summary || !findings || !dl)
        goto err_free;
    json_object_set_new(root, "old", doc_json(paths[0], old));
    json_object_set_new(root, "new", doc_json(paths[1], new_));
    for (int d = 0; d < 2; d++) {
        if (!dirs[d])
            continue;
        FerrySchemaDirection dir = (FerrySchemaDirection)d;
        json_array_append_new(dl, json_string(ferry_schema_direction_name(dir)));
        json_object_set_new(
            summary, ferry_schema_direction_name(dir),
            json_pack("{s:I, s:I, s:I}", "error",
                      (json_int_t)ferry_schema_report_tally(rep, dir, FERRY_SCHEMA_ERROR),
                      "warning",
                      (json_int_t)ferry_schema_report_tally(rep, dir, FERRY_SCHEMA_WARNING), "info",
                      (json_int_t)ferry_schema_report_tally(rep, dir, FERRY_SCHEMA_INFO)));
    }
    for (size_t i = 0; i < ferry_schema_report_count(rep); i++) {
        const FerrySchemaFinding *f = ferry_schema_report_finding(rep, i);
        if (f->severity < min)
            continue;
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "direction",
                              ferry_schema_direction_name(f->direction), "severity",
                              ferry_schema_severity_name(f->severity), "rule", f->rule, "section",
                              f->section, "path", f->path, "message", f->message, "why", f->why,
                              "fix", f->fix);
        if (!o)
            goto err_free;
        if (ferry && f->section[0])
            json_object_set_new(o, "instance", json_integer(f->instance));
        json_array_append_new(findings, o);
    }
    json_object_set_new(root, "directions", dl);
    json_object_set_new(root, "compatible", json_boolean(compatible));
    json_object_set_new(root, "summary", summary);
    json_object_set_new(root, "findings", findings);
    int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(root);
    return rc;
err_free:
    json_decref(root);
    json_decref(summary);
    json_decref(findings);
    json_decref(dl);
    return -1;
}

typedef struct LoadJob {
    const char *path;
    FerrySchemaInput in;
    FerrySchemaDoc *doc;
    FerryError err;
} LoadJob;

static void *load_job(void *arg)
{
    LoadJob *j = arg;
    j->doc = ferry_schema_doc_load_input(j->path, &j->in, &j->err);
    return NULL;
}

/* Identical files (a golden schema against an unchanged build) are parsed once: *new_ then
 * aliases *old. Different files load on two threads: with jsmn a load is CPU-bound (tokens on a
 * huge page, no per-page faults to serialise), see docs/compatibility.md. */
static int load_both(const char *old_path, const char *new_path, FerrySchemaDoc **old,
                     FerrySchemaDoc **new_, FerryError *err)
{
    LoadJob jobs[2] = {{.path = old_path}, {.path = new_path}};
    int rc;
    *old = *new_ = NULL;
    if ((rc = ferry_schema_input_open(old_path, &jobs[0].in, err)) < 0)
        return rc;
    if ((rc = ferry_schema_input_open(new_path, &jobs[1].in, err)) < 0) {
        ferry_schema_input_release(&jobs[0].in);
        return rc;
    }
    if (jobs[0].in.len == jobs[1].in.len &&
        !memcmp(jobs[0].in.buf, jobs[1].in.buf, jobs[0].in.len)) {
        ferry_schema_input_release(&jobs[1].in);
        load_job(&jobs[0]);
        *err = jobs[0].err;
        *old = *new_ = jobs[0].doc;
        return *old ? 0 : err->code;
    }
    pthread_t t;
    bool threaded = pthread_create(&t, NULL, load_job, &jobs[1]) == 0;
    load_job(&jobs[0]);
    if (threaded)
        pthread_join(t, NULL);
    else
        load_job(&jobs[1]);
    *old = jobs[0].doc;
    *new_ = jobs[1].doc;
    if (*old && *new_)
        return 0;
    *err = *old ? jobs[1].err : jobs[0].err;
    ferry_schema_doc_free(*old);
    ferry_schema_doc_free(*new_);
    *old = *new_ = NULL;
    return err->code;
}

int ferry_schema_check_main(int argc, char **argv)
{
    enum { OPT_BOTH = 256, OPT_REVERSE, OPT_JSON, OPT_STRICT, OPT_SEVERITY };
    static const struct option opts[] = {
        {"both", no_argument, NULL, OPT_BOTH},
        {"reverse", no_argument, NULL, OPT_REVERSE},
        {"json", no_argument, NULL, OPT_JSON},
        {"quiet", no_argument, NULL, 'q'},
        {"strict", no_argument, NULL, OPT_STRICT},
        {"severity", required_argument, NULL, OPT_SEVERITY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool dirs[2] = {true, false}, json = false, quiet = false, strict = false;
    bool both = false, reverse = false;
    FerrySchemaSeverity min = FERRY_SCHEMA_INFO;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+qh", opts, NULL)) != -1) {
        switch (c) {
        case OPT_BOTH:
            both = true;
            break;
        case OPT_REVERSE:
            reverse = true;
            break;
        case OPT_JSON:
            json = true;
            break;
        case 'q':
            quiet = true;
            break;
        case OPT_STRICT:
            strict = true;
            break;
        case OPT_SEVERITY:
            if (!strcmp(optarg, "info"))
                min = FERRY_SCHEMA_INFO;
            else if (!strcmp(optarg, "warning"))
                min = FERRY_SCHEMA_WARNING;
            else if (!strcmp(optarg, "error"))
                min = FERRY_SCHEMA_ERROR;
            else {
                fprintf(stderr, "ferry schema check: --severity takes info, warning or error\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "ferry schema check: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "ferry schema check: expected two files, OLD and NEW\n");
        usage(stderr);
        return 2;
    }
    if (both && reverse) {
        fprintf(stderr, "ferry schema check: --both and --reverse exclude each other\n");
        return 2;
    }
    if (both)
        dirs[1] = true;
    if (reverse) {
        dirs[0] = false;
        dirs[1] = true;
    }

    int status = 2;
    FerryError err = {0};
    FerrySchemaDoc *old = NULL, *new_ = NULL;
    FerrySchemaReport *rep = NULL;
    if (load_both(argv[optind], argv[optind + 1], &old, &new_, &err) < 0)
        goto err_report;
    if (!(rep = ferry_schema_report_new())) {
        ferry_error_set(&err, -12, "out of memory");
        goto err_report;
    }
    for (int d = 0; d < 2; d++)
        if (dirs[d] && ferry_schema_compare(old, new_, (FerrySchemaDirection)d, rep, &err) < 0)
            goto err_report;
    size_t bad = 0;
    for (int d = 0; d < 2; d++) {
        if (!dirs[d])
            continue;
        bad += ferry_schema_report_tally(rep, (FerrySchemaDirection)d, FERRY_SCHEMA_ERROR);
        if (strict)
            bad += ferry_schema_report_tally(rep, (FerrySchemaDirection)d, FERRY_SCHEMA_WARNING);
    }
    status = bad ? 1 : 0;
    const char *const paths[2] = {argv[optind], argv[optind + 1]};
    if (!quiet) {
        if (json) {
            if (print_json(stdout, paths, old, new_, rep, dirs, min, status == 0) < 0) {
                ferry_error_set(&err, -12, "cannot write the JSON report");
                status = 2;
                goto err_report;
            }
        } else {
            print_text(stdout, paths, old, new_, rep, dirs, min, strict);
        }
    }
    goto out;

err_report:
    if (!quiet || status == 2)
        fprintf(stderr, "ferry schema check: %s\n", err.msg);
out:
    ferry_schema_report_free(rep);
    if (new_ != old)
        ferry_schema_doc_free(new_);
    ferry_schema_doc_free(old);
    return status;
}
