/* Live migration of the shared dirtying boot-sector guest between two VMs in this process, over
 * every transport, and every failure the source must survive (cut link at several points up to
 * a later dirty pass, a flipped byte, lost acknowledgement, handshake mismatch, cancel). After
 * success the two RAMs are byte-identical and the destination guest carries on; after failure
 * the source guest keeps running and its page counters are still consistent (the guest's own
 * invariant). */
#include "ferry/control/qmp-migration.h"
#include "ferry/migration/migration.h"
#include "kvm-test.h"
#include "mig-proxy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <cmocka.h>

#define RAM          (128ULL << 20)
#define FIRST_PAGE   256   /* 1 MiB */
#define LAST_PAGE    25600 /* 100 MiB */
#define LAST_PAGE_5M 1280  /* dirty-5m.img: 1..5 MiB */

static const char *guest_dir;
/* The guest image and the end of the range it dirties; the non-convergence tests use the 5 MiB
 * guest (setup_5m/teardown_5m) so a deliberately low bandwidth cap still takes a few seconds. */
static const char *guest_img = "dirty.img";
static unsigned last_page = LAST_PAGE;

static void boot(KtGuest *g, uint64_t ram)
{
    char path[4096];
    FerryError err = {0};
    snprintf(path, sizeof(path), "%s/%s", guest_dir, guest_img);
    kt_guest_init(g, ram, -1);
    if (ferry_boot_sector(g->vm, g->bsp, path, &err) < 0)
        kt_die("ferry_boot_sector", &err);
    ferry_vcpu_start(g->bsp);
    ferry_vcpus_resume(g->vcpus);
    if (kt_wait_chars(g, 0, 'B', 2, 20) < 2)
        fail_msg("the guest did not start dirtying");
}

static FerryMigration *mig_new(KtGuest *g)
{
    FerryError err = {0};
    FerryMigHost h = {.vm = g->vm, .vcpus = g->vcpus};
    FerryMigration *m = ferry_migration_new(&h, &err);
    if (!m)
        fail_msg("ferry_migration_new: %s", err.msg);
    return m;
}

/* The guest adds 1 to the first byte of each page in order, pass after pass: consecutive
 * counters differ by 0 or 1 (mod 256), with at most one step. */
static void check_counters(KtGuest *g, const char *who)
{
    const uint8_t *ram = ferry_vm_gpa_to_host(g->vm, 0, RAM);
    unsigned steps = 0;
    for (unsigned p = FIRST_PAGE; p + 1 < last_page; p++) {
        uint8_t d = (uint8_t)(ram[(size_t)p * 4096] - ram[(size_t)(p + 1) * 4096]);
        if (d > 1)
            fail_msg("%s: page counters inconsistent at page %u (%u then %u)", who, p,
                     ram[(size_t)p * 4096], ram[(size_t)(p + 1) * 4096]);
        steps += d;
    }
    if (steps > 1)
        fail_msg("%s: %u steps in the page counters", who, steps);
}

/* The source must still be running: not paused, new passes printed, counters consistent. */
static void check_source_alive(KtGuest *src)
{
    assert_false(ferry_vcpus_paused(src->vcpus));
    size_t skip = kt_output_len(src);
    if (kt_wait_chars(src, skip, 'B', 2, 20) < 2)
        fail_msg("the source guest stopped making progress after the failed migration");
    ferry_vcpus_pause(src->vcpus);
    check_counters(src, "source");
    ferry_vcpus_resume(src->vcpus);
}

static FerryMigInfo *last_info;

static void check_dest_runs(KtGuest *src, KtGuest *dst)
{
    if (last_info)
        for (unsigned i = 0; i < last_info->npasses; i++)
            printf("   pass %u: sent %llu dirtied %llu bytes %llu %s\n", i,
                   (unsigned long long)last_info->passes[i].pages_sent,
                   (unsigned long long)last_info->passes[i].pages_dirtied,
                   (unsigned long long)last_info->passes[i].bytes_sent,
                   last_info->passes[i].final ? "final" : "");
    /* Both stopped: RAM must be identical. */
    assert_true(ferry_vcpus_paused(src->vcpus));
    const uint8_t *a = ferry_vm_gpa_to_host(src->vm, 0, RAM);
    const uint8_t *b = ferry_vm_gpa_to_host(dst->vm, 0, RAM);
    if (getenv("DBG_SRC")) {
        uint8_t *cp = malloc(RAM);
        memcpy(cp, a, RAM);
        usleep(200000);
        unsigned n = 0;
        for (size_t o = 0; o < RAM; o += 4096)
            n += memcmp(a + o, cp + o, 4096) != 0;
        printf("   source pages changed while paused: %u\n", n);
        free(cp);
    }
    for (size_t off = 0; off < RAM; off += 4096)
        if (memcmp(a + off, b + off, 4096)) {
            size_t k = 0;
            while (a[off + k] == b[off + k])
                k++;
            unsigned n = 0;
            for (size_t o = off; o < RAM; o += 4096)
                n += memcmp(a + o, b + o, 4096) != 0;
            fail_msg("RAM differs at 0x%zx (source 0x%02x, destination 0x%02x; %u pages differ)",
                     off + k, a[off + k], b[off + k], n);
        }
    check_counters(dst, "destination");
    ferry_vcpus_resume(dst->vcpus);
    if (kt_wait_chars(dst, 0, 'B', 2, 20) < 2)
        fail_msg("the destination guest does not run");
    ferry_vcpus_pause(dst->vcpus);
    check_counters(dst, "destination after running");
}

typedef struct Pair {
    KtGuest src, dst;
    FerryMigration *ms, *md;
    FerryMigInfo is, id;
} Pair;

static void pair_setup(Pair *p, uint64_t dst_ram)
{
    memset(p, 0, sizeof(*p));
    boot(&p->src, RAM);
    kt_guest_init(&p->dst, dst_ram, -1);
    p->ms = mig_new(&p->src);
    p->md = mig_new(&p->dst);
}

static void pair_finish(Pair *p)
{
    ferry_migration_wait(p->ms);
    ferry_migration_wait(p->md);
    ferry_migration_info(p->ms, &p->is);
    ferry_migration_info(p->md, &p->id);
}

static void pair_free(Pair *p)
{
    ferry_migration_free(p->ms);
    ferry_migration_free(p->md);
    kt_guest_destroy(&p->src);
    kt_guest_destroy(&p->dst);
}

static void run_tcp(Pair *p, const FerryMigParams *params, MigProxy *proxy)
{
    FerryError err = {0};
    if (params)
        assert_int_equal(ferry_migration_set_params(p->ms, params, &err), 0);
    if (ferry_migration_incoming(p->md, "tcp:127.0.0.1:0", &err) < 0)
        fail_msg("incoming: %s", err.msg);
    int port = ferry_migration_incoming_port(p->md);
    assert_true(port > 0);
    if (proxy) {
        mig_proxy_start(proxy, port);
        port = proxy->port;
    }
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);
    if (ferry_migration_start(p->ms, uri, &err) < 0)
        fail_msg("start: %s", err.msg);
    pair_finish(p);
    if (proxy)
        mig_proxy_stop(proxy);
}

static void expect_ok(Pair *p)
{
    if (p->is.status != FERRY_MIG_COMPLETED || p->id.status != FERRY_MIG_COMPLETED)
        fail_msg("source %s (%s), destination %s (%s)", ferry_mig_status_name(p->is.status),
                 p->is.error, ferry_mig_status_name(p->id.status), p->id.error);
    printf("  total %llu ms, downtime %llu ms, %u passes, %llu zero, %llu raw, %llu delta pages,"
           " %llu bytes\n",
           (unsigned long long)p->is.total_time_ms, (unsigned long long)p->is.downtime_ms,
           p->is.npasses, (unsigned long long)p->is.duplicate, (unsigned long long)p->is.normal,
           (unsigned long long)p->is.delta_pages, (unsigned long long)p->is.ram_transferred);
    assert_true(p->is.duplicate > 0); /* RAM above 100 MiB was never written */
    assert_true(p->is.normal > 0);
    last_info = &p->is;
    check_dest_runs(&p->src, &p->dst);
}

static void expect_failed(Pair *p, const char *src_msg, const char *dst_msg)
{
    printf("  source: %s: %s\n  destination: %s: %s\n", ferry_mig_status_name(p->is.status),
           p->is.error, ferry_mig_status_name(p->id.status), p->id.error);
    assert_int_equal(p->is.status, FERRY_MIG_FAILED);
    assert_int_equal(p->id.status, FERRY_MIG_FAILED);
    if (src_msg && !strstr(p->is.error, src_msg))
        fail_msg("source error lacks '%s'", src_msg);
    if (dst_msg && !strstr(p->id.error, dst_msg))
        fail_msg("destination error lacks '%s'", dst_msg);
    /* The destination never ran. */
    assert_true(ferry_vcpus_paused(p->dst.vcpus));
    check_source_alive(&p->src);
}

static void test_tcp(void **state)
{
    (void)state;
    Pair p;
    pair_setup(&p, RAM);
    FerryMigParams prm;
    ferry_mig_params_default(&prm);
    prm.multifd_channels = 0;
    run_tcp(&p, &prm, NULL);
    expect_ok(&p);
    assert_true(p.is.delta_pages > 0); /* re-sent pages went as deltas */
    pair_free(&p);
}

static void test_tcp_channels_nodelta(void **state)
{
    (void)state;
    Pair p;
    pair_setup(&p, RAM);
    FerryMigParams prm;
    ferry_mig_params_default(&prm);
    prm.multifd_channels = 2;
    prm.delta = false;
    run_tcp(&p, &prm, NULL);
    expect_ok(&p);
    assert_int_equal(p.is.delta_pages, 0);
    pair_free(&p);
}

static void test_tcp_channels_delta(void **state)
{
    (void)state;
    Pair p;
    pair_setup(&p, RAM);
    FerryMigParams prm;
    ferry_mig_params_default(&prm);
    prm.multifd_channels = 3;
    prm.downtime_limit_ms = 5;
    run_tcp(&p, &prm, NULL);
    expect_ok(&p);
    pair_free(&p);
}

static void test_unix(void **state)
{
    (void)state;
    Pair p;
    FerryError err = {0};
    pair_setup(&p, RAM);
    char uri[128];
    snprintf(uri, sizeof(uri), "unix:/tmp/ferry-mig-test-%d.sock", (int)getpid());
    assert_int_equal(ferry_migration_incoming(p.md, uri, &err), 0);
    assert_int_equal(ferry_migration_start(p.ms, uri, &err), 0);
    pair_finish(&p);
    expect_ok(&p);
    unlink(uri + 5);
    pair_free(&p);
}

static void test_fd(void **state)
{
    (void)state;
    Pair p;
    FerryError err = {0};
    pair_setup(&p, RAM);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char a[32], b[32];
    snprintf(a, sizeof(a), "fd:%d", sv[0]);
    snprintf(b, sizeof(b), "fd:%d", sv[1]);
    assert_int_equal(ferry_migration_incoming(p.md, b, &err), 0);
    assert_int_equal(ferry_migration_start(p.ms, a, &err), 0);
    pair_finish(&p);
    expect_ok(&p);
    close(sv[0]);
    close(sv[1]);
    pair_free(&p);
}

static void test_file_snapshot_restore(void **state)
{
    (void)state;
    Pair p;
    FerryError err = {0};
    pair_setup(&p, RAM);
    char uri[128];
    snprintf(uri, sizeof(uri), "file:/tmp/ferry-mig-test-%d.snap", (int)getpid());
    assert_int_equal(ferry_migration_start(p.ms, uri, &err), 0);
    assert_int_equal(ferry_migration_wait(p.ms), FERRY_MIG_COMPLETED);
    /* Restore after the snapshot was written (no return path). */
    assert_int_equal(ferry_migration_incoming(p.md, uri, &err), 0);
    pair_finish(&p);
    expect_ok(&p);

    /* A truncated snapshot never restores. */
    FerryMigration *m2;
    KtGuest g3;
    kt_guest_init(&g3, RAM, -1);
    m2 = mig_new(&g3);
    struct stat st;
    assert_int_equal(stat(uri + 5, &st), 0);
    assert_int_equal(truncate(uri + 5, st.st_size - 100), 0);
    assert_int_equal(ferry_migration_incoming(m2, uri, &err), 0);
    assert_int_equal(ferry_migration_wait(m2), FERRY_MIG_FAILED);
    FerryMigInfo in;
    ferry_migration_info(m2, &in);
    printf("  truncated snapshot: %s\n", in.error);
    assert_non_null(strstr(in.error, "stream ended"));
    assert_true(ferry_vcpus_paused(g3.vcpus));
    ferry_migration_free(m2);
    kt_guest_destroy(&g3);
    unlink(uri + 5);
    pair_free(&p);
}

static void test_handshake_mismatch(void **state)
{
    (void)state;
    Pair p;
    pair_setup(&p, RAM / 2);
    run_tcp(&p, NULL, NULL);
    expect_failed(&p, "refused", "mismatch");
    assert_non_null(strstr(p.is.error, "RAM block 0"));
    /* Refused before any RAM moved. */
    assert_int_equal(p.is.npasses, 0);
    pair_free(&p);
}

static void cut_at(int64_t n, bool channels, const char *src_msg)
{
    Pair p;
    MigProxy proxy = {.cut_after = n, .flip_at = -1};
    pair_setup(&p, RAM);
    FerryMigParams prm;
    ferry_mig_params_default(&prm);
    prm.multifd_channels = channels ? 2 : 0;
    printf(" cut after %lld bytes%s\n", (long long)n, channels ? " (2 RAM channels)" : "");
    run_tcp(&p, &prm, &proxy);
    expect_failed(&p, src_msg, NULL);
    if (strstr(p.is.error, "''")) /* a record or block with no name: says nothing */
        fail_msg("source error names nothing: %s", p.is.error);
    pair_free(&p);
}

static void test_cut(void **state)
{
    (void)state;
    cut_at(10, false, NULL);  /* inside the stream header */
    cut_at(300, false, NULL); /* inside the handshake */
    /* First pass, RAM on the main connection: the error says which RAM it was sending. */
    cut_at(4 << 20, false, "sending RAM block 0 (guest-physical 0x0, 128 MiB), pages ");
    cut_at(400, true, NULL); /* main channel after the handshake, RAM channels running */
}

/* Cut in a later dirty pass, timed by the engine's own pass hook: pass 1 (all RAM) at full
 * speed, then a cap that makes each dirty pass ~0.3 s (25 000 delta pages of ~14 bytes at
 * 1 MiB/s), and the link cut as pass 4 starts. The source notices while sending a dirty pass
 * (no final pass), and its guest runs on. */
typedef struct PassCut {
    FerryMigration *m;
    MigProxy *proxy;
} PassCut;

static void cut_on_pass(void *opaque, uint64_t pass)
{
    PassCut *pc = opaque;
    if (pass == 2) {
        FerryMigParams prm;
        FerryError err = {0};
        ferry_migration_get_params(pc->m, &prm);
        prm.max_bandwidth = 1 << 20;
        ferry_migration_set_params(pc->m, &prm, &err);
    }
    if (pass == 4)
        atomic_store(&pc->proxy->cut_now, true);
}

static void test_cut_later_pass(void **state)
{
    (void)state;
    Pair p;
    MigProxy proxy = {.cut_after = -1, .flip_at = -1};
    PassCut pc = {.proxy = &proxy};
    FerryError err = {0};
    memset(&p, 0, sizeof(p));
    boot(&p.src, RAM);
    kt_guest_init(&p.dst, RAM, -1);
    FerryMigHost h = {.vm = p.src.vm, .vcpus = p.src.vcpus, .on_pass = cut_on_pass, .opaque = &pc};
    p.ms = ferry_migration_new(&h, &err);
    assert_non_null(p.ms);
    pc.m = p.ms;
    p.md = mig_new(&p.dst);
    FerryMigParams prm;
    ferry_mig_params_default(&prm);
    prm.downtime_limit_ms = 0; /* never fits: max_passes (30) dirty passes */
    run_tcp(&p, &prm, &proxy);
    for (unsigned i = 0; i < p.is.npasses; i++)
        printf("   pass %u: %llu pages, %llu ms%s\n", i + 1,
               (unsigned long long)p.is.passes[i].pages_sent,
               (unsigned long long)p.is.passes[i].duration_us / 1000,
               p.is.passes[i].final ? " final" : "");
    expect_failed(&p, NULL, NULL);
    assert_null(strstr(p.is.error, "cancelled"));
    assert_null(strstr(p.is.error, "acknowledgement"));
    assert_true(p.is.npasses >= 3 && p.is.npasses < 20);
    for (unsigned i = 0; i < p.is.npasses; i++)
        assert_false(p.is.passes[i].final);
    pair_free(&p);
}

static void test_flip(void **state)
{
    (void)state;
    Pair p;
    MigProxy proxy = {.cut_after = -1, .flip_at = 3 << 20};
    pair_setup(&p, RAM);
    FerryMigParams prm;
    ferry_mig_params_default(&prm);
    prm.multifd_channels = 0; /* RAM on the main connection, where the proxy flips a byte */
    run_tcp(&p, &prm, &proxy);
    expect_failed(&p, NULL, "checksum");
    pair_free(&p);
}

static void test_ack_lost(void **state)
{
    (void)state;
    Pair p;
    MigProxy proxy = {.cut_after = -1, .flip_at = -1, .cut_return = true};
    pair_setup(&p, RAM);
    run_tcp(&p, NULL, &proxy);
    expect_failed(&p, "acknowledgement", "confirm");
    pair_free(&p);
}

static void test_cancel(void **state)
{
    (void)state;
    Pair p;
    FerryError err = {0};
    pair_setup(&p, RAM);
    FerryMigParams prm;
    ferry_mig_params_default(&prm);
    prm.max_bandwidth = 20 << 20; /* ~5 s for the first pass: time to cancel */
    assert_int_equal(ferry_migration_set_params(p.ms, &prm, &err), 0);
    assert_int_equal(ferry_migration_incoming(p.md, "tcp:127.0.0.1:0", &err), 0);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", ferry_migration_incoming_port(p.md));
    assert_int_equal(ferry_migration_start(p.ms, uri, &err), 0);
    /* A second migration while one runs is refused. */
    assert_int_equal(ferry_migration_start(p.ms, uri, &err), -EBUSY);
    usleep(300000);
    FerryMigInfo in;
    ferry_migration_info(p.ms, &in);
    assert_int_equal(in.status, FERRY_MIG_ACTIVE);
    assert_true(in.ram_transferred > 0);
    assert_int_equal(ferry_migration_cancel(p.ms), 0);
    pair_finish(&p);
    printf("  destination: %s\n", p.id.error);
    assert_int_equal(p.is.status, FERRY_MIG_CANCELLED);
    assert_int_equal(p.id.status, FERRY_MIG_FAILED);
    assert_true(ferry_vcpus_paused(p.dst.vcpus));
    check_source_alive(&p.src);
    pair_free(&p);
}

static int setup_5m(void **state)
{
    (void)state;
    guest_img = "dirty-5m.img";
    last_page = LAST_PAGE_5M;
    return 0;
}

static int teardown_5m(void **state)
{
    (void)state;
    guest_img = "dirty.img";
    last_page = LAST_PAGE;
    return 0;
}

#define CAP (32u << 20) /* bytes/s */

/* Parameters under which the 5 MiB guest never converges: raw re-sends (no delta) at 32 MiB/s
 * make a dirty pass of its 1024 pages take ~125 ms, while the guest rewrites all of them every
 * few milliseconds, so the expected stop never fits 10 ms. */
static void nonconverging_params(FerryMigParams *prm, FerryMigConverge policy, uint32_t passes)
{
    ferry_mig_params_default(prm);
    prm->multifd_channels = 0;
    prm->delta = false;
    prm->max_bandwidth = CAP;
    prm->downtime_limit_ms = 10;
    prm->converge = policy;
    prm->max_passes = passes;
}

/* Start the migration and sample query-migrate until it ends: whether mbps was ever 0 after
 * bytes had moved, and the highest cpu-throttle-percentage the QMP answer showed. */
typedef struct Samples {
    unsigned n, zero_rate;
    json_int_t max_throttle;
} Samples;

static void run_sampled(Pair *p, const FerryMigParams *prm, Samples *sm)
{
    FerryError err = {0};
    memset(sm, 0, sizeof(*sm));
    assert_int_equal(ferry_migration_set_params(p->ms, prm, &err), 0);
    if (ferry_migration_incoming(p->md, "tcp:127.0.0.1:0", &err) < 0)
        fail_msg("incoming: %s", err.msg);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", ferry_migration_incoming_port(p->md));
    if (ferry_migration_start(p->ms, uri, &err) < 0)
        fail_msg("start: %s", err.msg);
    static FerryMigInfo in; /* large: not on the stack */
    for (;;) {
        ferry_migration_info(p->ms, &in);
        if (!ferry_mig_status_active(in.status))
            break;
        if (in.status == FERRY_MIG_ACTIVE && in.ram_transferred > 0) {
            sm->n++;
            json_t *j = ferry_qmp_migration_info_json(&in);
            json_t *ram = json_object_get(j, "ram");
            if (json_real_value(json_object_get(ram, "mbps")) <= 0 ||
                json_integer_value(json_object_get(ram, "pages-per-second")) <= 0)
                sm->zero_rate++;
            json_int_t t = json_integer_value(json_object_get(j, "cpu-throttle-percentage"));
            if (t > sm->max_throttle)
                sm->max_throttle = t;
            json_decref(j);
        }
        usleep(5000);
    }
    pair_finish(p);
}

static void print_passes(const FerryMigInfo *in)
{
    for (unsigned i = 0; i < in->npasses; i++)
        printf("   pass %u: sent %llu dirtied %llu bytes %llu %llu us%s\n", i + 1,
               (unsigned long long)in->passes[i].pages_sent,
               (unsigned long long)in->passes[i].pages_dirtied,
               (unsigned long long)in->passes[i].bytes_sent,
               (unsigned long long)in->passes[i].duration_us, in->passes[i].final ? " final" : "");
}

/* x-ferry-converge switchover: a guest that never converges is switched over on the
 * max-passes-th pass exactly (the final one included), and arrives intact. */
static void test_converge_switchover(void **state)
{
    (void)state;
    Pair p;
    pair_setup(&p, RAM);
    FerryMigParams prm;
    nonconverging_params(&prm, FERRY_MIG_CONVERGE_SWITCHOVER, 4);
    Samples sm;
    run_sampled(&p, &prm, &sm);
    print_passes(&p.is);
    printf("  %u samples, %u with a zero rate, mbps %.1f\n", sm.n, sm.zero_rate, p.is.mbps);
    expect_ok(&p);
    assert_int_equal(p.is.dirty_sync_count, 4);
    assert_int_equal(p.is.npasses, 4);
    assert_true(p.is.passes[3].final);
    /* It did not converge: every live dirty pass found the whole range dirty again. */
    assert_true(p.is.passes[2].pages_dirtied >= LAST_PAGE_5M - FIRST_PAGE);
    assert_int_equal(sm.max_throttle, 0);
    assert_int_equal(p.is.throttle_pct, 0);
    assert_int_equal(sm.zero_rate, 0);
    pair_free(&p);
}

/* x-ferry-converge throttle: from the max-passes-th pass on the vCPUs are throttled 20 % more
 * per pass (query-migrate shows cpu-throttle-percentage meanwhile, as QEMU), and the guest that
 * still does not converge is switched over on pass 3 x max-passes. */
static void test_converge_throttle(void **state)
{
    (void)state;
    Pair p;
    pair_setup(&p, RAM);
    FerryMigParams prm;
    nonconverging_params(&prm, FERRY_MIG_CONVERGE_THROTTLE, 2);
    Samples sm;
    run_sampled(&p, &prm, &sm);
    print_passes(&p.is);
    printf("  %u samples, highest cpu-throttle-percentage %lld, last throttle %u %%\n", sm.n,
           (long long)sm.max_throttle, p.is.throttle_pct);
    expect_ok(&p);
    assert_int_equal(p.is.dirty_sync_count, 6);
    assert_true(p.is.passes[5].final);
    /* Throttled from pass 2 on: 20, 40, 60, 80 % before passes 2..5. */
    assert_int_equal(p.is.throttle_pct, 80);
    assert_true(sm.max_throttle >= 20 && sm.max_throttle <= 80);
    assert_false(p.is.throttle_active);
    json_t *j = ferry_qmp_migration_info_json(&p.is);
    assert_null(json_object_get(j, "cpu-throttle-percentage")); /* shown only while throttling */
    json_decref(j);
    pair_free(&p);
}

/* mbps and pages-per-second: never 0 while bytes move, and after completion the average over
 * the migration, which a bandwidth cap bounds (not a timing assertion: a wide margin). */
static void test_rate_capped(void **state)
{
    (void)state;
    Pair p;
    pair_setup(&p, RAM);
    FerryMigParams prm;
    ferry_mig_params_default(&prm);
    prm.max_bandwidth = CAP;
    Samples sm;
    run_sampled(&p, &prm, &sm);
    double cap_mbps = (double)CAP * 8 / 1e6;
    printf("  %u samples, %u with a zero rate; completed: %.1f Mbit/s (cap %.1f), %llu pages/s\n",
           sm.n, sm.zero_rate, p.is.mbps, cap_mbps, (unsigned long long)p.is.pages_per_second);
    expect_ok(&p);
    assert_true(sm.n > 0);
    assert_int_equal(sm.zero_rate, 0);
    assert_true(p.is.mbps > 0 && p.is.mbps <= cap_mbps * 1.5);
    assert_true(p.is.pages_per_second > 0);
    json_t *j = ferry_qmp_migration_info_json(&p.is);
    json_t *ram = json_object_get(j, "ram");
    assert_true(json_real_value(json_object_get(ram, "mbps")) == p.is.mbps);
    assert_int_equal(json_integer_value(json_object_get(ram, "pages-per-second")),
                     p.is.pages_per_second);
    json_decref(j);
    pair_free(&p);
}

int main(int argc, char **argv)
{
    kt_require_kvm("kvm-migrate");
    if (argc < 2) {
        fprintf(stderr, "usage: %s GUEST_DIR\n", argv[0]);
        return 2;
    }
    guest_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_tcp_channels_nodelta),
        cmocka_unit_test(test_tcp_channels_delta),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_fd),
        cmocka_unit_test(test_file_snapshot_restore),
        cmocka_unit_test(test_handshake_mismatch),
        cmocka_unit_test(test_cut),
        cmocka_unit_test(test_cut_later_pass),
        cmocka_unit_test(test_flip),
        cmocka_unit_test(test_ack_lost),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test_setup_teardown(test_converge_switchover, setup_5m, teardown_5m),
        cmocka_unit_test_setup_teardown(test_converge_throttle, setup_5m, teardown_5m),
        cmocka_unit_test_setup_teardown(test_rate_capped, setup_5m, teardown_5m),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
