/* ferry migrate: drive a live migration of a running VM through its QMP socket (Ferry or QEMU),
 * show a progress bar (percent, rate, pass, expected downtime), print a summary and optionally
 * write the per-pass timeline as a hand-written SVG plot. */
#include "commands.h"
#include "ferry/control/qmp-client.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 10000

typedef struct MigOpts {
    const char *qmp, *uri, *timeline;
    const char *converge; /* x-ferry-converge, NULL: unchanged */
    int64_t downtime_limit, max_bandwidth, channels, max_passes;
    double timeout_s;
    bool quiet, verbose;
} MigOpts;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferry migrate --qmp SOCKET [options] URI\n\n"
            "Live-migrate the VM behind the QMP socket SOCKET to URI (tcp:HOST:PORT, unix:PATH,\n"
            "fd:N, file:PATH) and wait for the end, with a progress bar on stderr.\n\n"
            "options:\n"
            "  --downtime-limit MS     longest acceptable stop (migrate-set-parameters)\n"
            "  --max-bandwidth SIZE    bytes/s cap, suffix K/M/G (0 = unlimited on Ferry)\n"
            "  --channels N            dedicated RAM channels (multifd-channels)\n"
            "  --converge POLICY       when the guest dirties too fast: switchover (default:\n"
            "                          stop after --max-passes passes) or throttle (slow the\n"
            "                          vCPUs first); Ferry only (x-ferry-converge)\n"
            "  --max-passes N          passes, the final one included, before that policy\n"
            "                          applies: 2 to 255 (default 30; x-ferry-max-passes)\n"
            "  --timeline FILE.svg     plot pages sent and dirtied per pass, and the downtime\n"
            "  --timeout SECONDS       cancel the migration if it has not ended (default none)\n"
            "  --quiet                 no progress bar, summary only\n"
            "  --verbose               also print every pass (pages, bytes, time)\n");
}

static int64_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return -1;
    switch (*end) {
    case 'k':
    case 'K':
        v *= 1024;
        end++;
        break;
    case 'm':
    case 'M':
        v *= 1024 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        v *= 1024.0 * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    return *end ? -1 : (int64_t)v;
}

static int parse(int argc, char **argv, MigOpts *o)
{
    o->downtime_limit = o->max_bandwidth = o->channels = o->max_passes = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 1;
        if (!strcmp(a, "--quiet")) {
            o->quiet = true;
            continue;
        }
        if (!strcmp(a, "--verbose")) {
            o->verbose = true;
            continue;
        }
        if (a[0] != '-') {
            if (o->uri) {
                fprintf(stderr, "ferry migrate: more than one URI ('%s', '%s')\n", o->uri, a);
                return -1;
            }
            o->uri = a;
            continue;
        }
        if (!v) {
            fprintf(stderr, "ferry migrate: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--qmp"))
            o->qmp = v;
        else if (!strcmp(a, "--timeline"))
            o->timeline = v;
        else if (!strcmp(a, "--downtime-limit"))
            o->downtime_limit = parse_size(v);
        else if (!strcmp(a, "--max-bandwidth"))
            o->max_bandwidth = parse_size(v);
        else if (!strcmp(a, "--channels"))
            o->channels = parse_size(v);
        else if (!strcmp(a, "--max-passes"))
            o->max_passes = parse_size(v);
        else if (!strcmp(a, "--converge"))
            o->converge = v;
        else if (!strcmp(a, "--timeout"))
            o->timeout_s = atof(v);
        else {
            fprintf(stderr, "ferry migrate: unknown option '%s'\n", a);
            return -1;
        }
        if ((!strcmp(a, "--downtime-limit") && o->downtime_limit < 0) ||
            (!strcmp(a, "--max-bandwidth") && o->max_bandwidth < 0) ||
            (!strcmp(a, "--channels") && (o->channels < 0 || o->channels > 255))) {
            fprintf(stderr, "ferry migrate: %s '%s' is not a valid value\n", a, v);
            return -1;
        }
        if (!strcmp(a, "--max-passes") && (o->max_passes < 2 || o->max_passes > 255)) {
            fprintf(stderr, "ferry migrate: --max-passes '%s': expects 2 to 255\n", v);
            return -1;
        }
        if (!strcmp(a, "--converge") && strcmp(v, "switchover") && strcmp(v, "throttle")) {
            fprintf(stderr, "ferry migrate: --converge '%s': expects switchover or throttle\n", v);
            return -1;
        }
    }
    if (!o->qmp || !o->uri) {
        fprintf(stderr, "ferry migrate: --qmp SOCKET and a URI are required\n");
        return -1;
    }
    return 0;
}

static json_int_t jint(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void progress(json_t *st, double rate, bool tty)
{
    json_t *ram = json_object_get(st, "ram");
    double total = (double)jint(ram, "total"), rem = (double)jint(ram, "remaining");
    double pct = total > 0 ? 100.0 * (1.0 - rem / total) : 0;
    if (pct < 0)
        pct = 0;
    int width = 30, fill = (int)(pct / 100 * width + 0.5);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    /* While active the pass under way is the one after the last finished sync; once the
     * migration completed, passes are all finished and the real downtime is known. */
    const char *status = json_string_value(json_object_get(st, "status")) ?: "";
    bool done = !strcmp(status, "completed");
    fprintf(stderr,
            "%s[%s] %5.1f%%  %7.1f MiB/s  pass %" JSON_INTEGER_FORMAT "  %s %" JSON_INTEGER_FORMAT
            " ms  %-10s%s",
            tty ? "\r" : "", bar, pct, rate / (1 << 20),
            jint(ram, "dirty-sync-count") + (done ? 0 : 1), done ? "downtime" : "expected downtime",
            jint(st, done ? "downtime" : "expected-downtime"), status, tty ? "" : "\n");
    fflush(stderr);
}

/* A bar chart per pass: pages sent (blue) and pages dirtied during the pass (orange), the final
 * pass (sent with vCPUs stopped) in red, and the downtime in the title. */
static int write_svg(const char *path, json_t *st, FerryError *err)
{
    json_t *passes = json_object_get(json_object_get(st, "x-ferry"), "passes");
    size_t n = json_array_size(passes);
    FILE *f = fopen(path, "w");
    if (!f)
        return ferry_error_set(err, -errno, "--timeline %s: %s", path, strerror(errno));
    double maxv = 1;
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(passes, i);
        double a = (double)jint(p, "pages-sent"), b = (double)jint(p, "pages-dirtied");
        maxv = a > maxv ? a : maxv;
        maxv = b > maxv ? b : maxv;
    }
    const int W = 760, H = 400, L = 80, R = 20, T = 50, B = 60;
    double slot = n ? (double)(W - L - R) / n : 1, bw = slot * 0.38;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    json_t *ram = json_object_get(st, "ram");
    json_t *dus = json_object_get(json_object_get(st, "x-ferry"), "downtime-us");
    double down = dus ? (double)json_integer_value(dus) / 1e3 : (double)jint(st, "downtime");
    fprintf(f,
            "<text x=\"%d\" y=\"20\" font-size=\"15\">Ferry live migration: %s, total "
            "%" JSON_INTEGER_FORMAT " ms, downtime %.1f ms, %zu passes</text>\n",
            L, json_string_value(json_object_get(st, "status")) ?: "?", jint(st, "total-time"),
            down, n);
    fprintf(f,
            "<text x=\"%d\" y=\"38\" fill=\"#555\">%" JSON_INTEGER_FORMAT
            " zero, %" JSON_INTEGER_FORMAT " raw, %" JSON_INTEGER_FORMAT
            " delta pages; %.1f MiB on the "
            "wire</text>\n",
            L, jint(ram, "duplicate"), jint(ram, "normal"),
            jint(json_object_get(st, "x-ferry"), "delta-pages"),
            (double)jint(ram, "transferred") / (1 << 20));
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, H - B,
            W - R, H - B);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, T, L,
            H - B);
    for (int k = 0; k <= 4; k++) {
        double v = maxv * k / 4, y = H - B - (H - B - T) * (double)k / 4;
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", L - 6, y + 4, v);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L + 1,
                y, W - R, y);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(passes, i);
        double a = (double)jint(p, "pages-sent"), b = (double)jint(p, "pages-dirtied");
        bool fin = json_is_true(json_object_get(p, "final"));
        double x = L + slot * i + slot * 0.1;
        double ha = (H - B - T) * a / maxv, hb = (H - B - T) * b / maxv;
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                "<title>pass %zu: %.0f pages sent in %" JSON_INTEGER_FORMAT " us</title></rect>\n",
                x, H - B - ha, bw, ha, fin ? "#d62728" : "#1f77b4", i + 1, a,
                jint(p, "duration-us"));
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ff7f0e\">"
                "<title>pass %zu: %.0f pages dirtied</title></rect>\n",
                x + bw, H - B - hb, bw, hb, i + 1, b);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s%zu</text>\n", x + bw,
                H - B + 15, fin ? "final " : "", i + 1);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">pass</text>\n", (L + W - R) / 2,
            H - B + 35);
    fprintf(f,
            "<text transform=\"translate(18,%d) rotate(-90)\" text-anchor=\"middle\">pages"
            "</text>\n",
            (T + H - B) / 2);
    int lx = W - R - 330;
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#1f77b4\"/>"
            "<text x=\"%d\" y=\"%d\">sent</text>\n",
            lx, H - 22, lx + 16, H - 12);
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#ff7f0e\"/>"
            "<text x=\"%d\" y=\"%d\">dirtied during the pass</text>\n",
            lx + 60, H - 22, lx + 76, H - 12);
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#d62728\"/>"
            "<text x=\"%d\" y=\"%d\">final (downtime)</text>\n",
            lx + 220, H - 22, lx + 236, H - 12);
    fprintf(f, "</svg>\n");
    if (fclose(f))
        return ferry_error_set(err, -errno, "--timeline %s: %s", path, strerror(errno));
    return 0;
}

static int run_migrate(int argc, char **argv)
{
    MigOpts o = {0};
    int r = parse(argc, argv, &o);
    if (r == 1) {
        usage(stdout);
        return 0;
    }
    if (r < 0) {
        fprintf(stderr, "'ferry migrate --help' lists the options.\n");
        return 2;
    }
    FerryError err = {0};
    FerryQmpError qerr;
    FerryQmpClient *c = ferry_qmp_client_connect(o.qmp, TIMEOUT_MS, &err);
    if (!c || ferry_qmp_client_negotiate(c, TIMEOUT_MS, &err) < 0) {
        fprintf(stderr, "ferry migrate: %s\n", err.msg);
        ferry_qmp_client_close(c);
        return 1;
    }
    json_t *params = json_object();
    if (o.downtime_limit >= 0)
        json_object_set_new(params, "downtime-limit", json_integer(o.downtime_limit));
    if (o.max_bandwidth >= 0)
        json_object_set_new(params, "max-bandwidth", json_integer(o.max_bandwidth));
    if (o.channels >= 0)
        json_object_set_new(params, "multifd-channels", json_integer(o.channels));
    if (o.converge)
        json_object_set_new(params, "x-ferry-converge", json_string(o.converge));
    if (o.max_passes >= 0)
        json_object_set_new(params, "x-ferry-max-passes", json_integer(o.max_passes));
    int rc = 1;
    if (json_object_size(params) && ferry_qmp_client_execute(c, "migrate-set-parameters", params,
                                                             NULL, &qerr, TIMEOUT_MS, &err) < 0) {
        fprintf(stderr, "ferry migrate: migrate-set-parameters: %s\n", err.msg);
        goto out;
    }
    json_t *args = json_pack("{s:s}", "uri", o.uri);
    r = ferry_qmp_client_execute(c, "migrate", args, NULL, &qerr, TIMEOUT_MS, &err);
    json_decref(args);
    if (r < 0) {
        fprintf(stderr, "ferry migrate: migrate %s: %s\n", o.uri, err.msg);
        goto out;
    }
    bool tty = isatty(STDERR_FILENO);
    double t0 = now_s(), last_t = t0, shown_t = 0;
    json_int_t last_bytes = 0;
    double rate = 0;
    json_t *st = NULL;
    for (;;) {
        json_decref(st);
        st = NULL;
        if (ferry_qmp_client_execute(c, "query-migrate", NULL, &st, &qerr, TIMEOUT_MS, &err) < 0) {
            fprintf(stderr, "\nferry migrate: query-migrate: %s\n", err.msg);
            goto out;
        }
        const char *s = json_string_value(json_object_get(st, "status"));
        double t = now_s();
        json_int_t bytes = jint(json_object_get(st, "ram"), "transferred");
        if (t > last_t) {
            double inst = (double)(bytes - last_bytes) / (t - last_t);
            rate = rate ? 0.5 * rate + 0.5 * inst : inst;
        }
        last_t = t;
        last_bytes = bytes;
        bool done =
            s && (!strcmp(s, "completed") || !strcmp(s, "failed") || !strcmp(s, "cancelled"));
        if (!o.quiet && (tty || t - shown_t >= 1.0 || done)) {
            progress(st, rate, tty);
            shown_t = t;
        }
        if (done)
            break;
        if (o.timeout_s > 0 && t - t0 > o.timeout_s) {
            fprintf(stderr, "\nferry migrate: no end after %.0f s, cancelling\n", o.timeout_s);
            ferry_qmp_client_execute(c, "migrate_cancel", NULL, NULL, &qerr, TIMEOUT_MS, &err);
            o.timeout_s = 0;
        }
        usleep(50000);
    }
    if (!o.quiet && tty)
        fputc('\n', stderr);
    const char *s = json_string_value(json_object_get(st, "status"));
    json_t *ram = json_object_get(st, "ram");
    if (!strcmp(s, "completed")) {
        json_t *dus = json_object_get(json_object_get(st, "x-ferry"), "downtime-us");
        double down = dus ? (double)json_integer_value(dus) / 1e3 : (double)jint(st, "downtime");
        printf("migration completed: total %" JSON_INTEGER_FORMAT
               " ms, downtime %.1f ms, setup %" JSON_INTEGER_FORMAT " ms, %" JSON_INTEGER_FORMAT
               " passes; %" JSON_INTEGER_FORMAT " pages zero, %" JSON_INTEGER_FORMAT
               " raw, %" JSON_INTEGER_FORMAT " delta; %.1f MiB transferred\n",
               jint(st, "total-time"), down, jint(st, "setup-time"), jint(ram, "dirty-sync-count"),
               jint(ram, "duplicate"), jint(ram, "normal"),
               jint(json_object_get(st, "x-ferry"), "delta-pages"),
               (double)jint(ram, "transferred") / (1 << 20));
        rc = 0;
        json_t *passes = json_object_get(json_object_get(st, "x-ferry"), "passes");
        for (size_t i = 0; o.verbose && i < json_array_size(passes); i++) {
            json_t *p = json_array_get(passes, i);
            printf("  pass %2zu%s: %8" JSON_INTEGER_FORMAT " pages sent, %10" JSON_INTEGER_FORMAT
                   " bytes, %8" JSON_INTEGER_FORMAT " us, %8" JSON_INTEGER_FORMAT " dirtied\n",
                   i + 1, json_is_true(json_object_get(p, "final")) ? " (final)" : "",
                   jint(p, "pages-sent"), jint(p, "bytes"), jint(p, "duration-us"),
                   jint(p, "pages-dirtied"));
        }
    } else {
        const char *e = json_string_value(json_object_get(st, "error-desc"));
        fprintf(stderr, "ferry migrate: migration %s%s%s; the source VM keeps running\n", s,
                e ? ": " : "", e ? e : "");
    }
    if (o.timeline) {
        if (write_svg(o.timeline, st, &err) < 0) {
            fprintf(stderr, "ferry migrate: %s\n", err.msg);
            rc = 1;
        } else {
            printf("timeline: %s\n", o.timeline);
        }
    }
    json_decref(st);
out:
    json_decref(params);
    ferry_qmp_client_close(c);
    return rc;
}

const FerryCommand ferry_cmd_migrate = {"migrate", "live-migrate a VM through its QMP socket",
                                        run_migrate};
