/* The FerryMigration object: parameters, statistics, status changes, and the start/cancel/wait
 * entry points that hand the work to the engine threads in source.c and incoming.c. */
#include "migration-int.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const status_names[] = {
    [FERRY_MIG_NONE] = "none",
    [FERRY_MIG_SETUP] = "setup",
    [FERRY_MIG_ACTIVE] = "active",
    [FERRY_MIG_DEVICE] = "device",
    [FERRY_MIG_COMPLETED] = "completed",
    [FERRY_MIG_FAILED] = "failed",
    [FERRY_MIG_CANCELLING] = "cancelling",
    [FERRY_MIG_CANCELLED] = "cancelled",
};

const char *ferry_mig_status_name(FerryMigStatus s)
{
    return (unsigned)s < sizeof(status_names) / sizeof(status_names[0]) ? status_names[s] : "?";
}

bool ferry_mig_status_active(FerryMigStatus s)
{
    return s == FERRY_MIG_SETUP || s == FERRY_MIG_ACTIVE || s == FERRY_MIG_DEVICE ||
           s == FERRY_MIG_CANCELLING;
}

void ferry_mig_params_default(FerryMigParams *p)
{
    *p = (FerryMigParams){
        .downtime_limit_ms = 300,
        .max_bandwidth = 0,
        .multifd_channels = 2,
        .max_passes = 30,
        .converge = FERRY_MIG_CONVERGE_SWITCHOVER,
        .delta = true,
        .prefault = true,
    };
}

void mig_rate_account(FerryMigration *m, uint64_t pages, bool pass_end)
{
    FerryMigInfo *in = &m->info;
    m->pages_sent += pages;
    uint64_t now = mig_now_ns(), dt = now - m->rate_t0_ns;
    uint64_t db = in->ram_transferred - m->rate_bytes0;
    if (!dt || !db)
        return;
    /* A fresh window every 100 ms (QEMU's BUFFER_DELAY), earlier at a pass end or while
     * nothing was reported yet, so the rate is never 0 once bytes have moved. */
    if (dt < 100000000 && !pass_end && in->mbps > 0)
        return;
    double secs = dt / 1e9;
    in->mbps = (double)db * 8 / 1e6 / secs;
    in->pages_per_second = (uint64_t)((double)(m->pages_sent - m->rate_pages0) / secs);
    m->rate_t0_ns = now;
    m->rate_bytes0 = in->ram_transferred;
    m->rate_pages0 = m->pages_sent;
}

void mig_rate_complete(FerryMigration *m)
{
    FerryMigInfo *in = &m->info;
    uint64_t total = mig_now_ns() - m->start_ns, setup = in->setup_time_ms * 1000000;
    uint64_t xfer = total > setup ? total - setup : total;
    if (!xfer)
        return;
    double secs = xfer / 1e9;
    in->mbps = (double)in->ram_transferred * 8 / 1e6 / secs;
    in->pages_per_second = (uint64_t)((double)m->pages_sent / secs);
}

uint64_t mig_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void mig_lock(FerryMigration *m)
{
    if (m->host.lock)
        m->host.lock(m->host.opaque);
}

void mig_unlock(FerryMigration *m)
{
    if (m->host.unlock)
        m->host.unlock(m->host.opaque);
}

void mig_set_active(FerryMigration *m, bool active)
{
    if (m->host.set_active) {
        m->host.set_active(m->host.opaque, active);
    } else if (m->host.machine) {
        mig_lock(m);
        ferry_machine_set_migration_active(m->host.machine, active);
        mig_unlock(m);
    }
}

unsigned mig_vcpu_count(FerryMigration *m)
{
    return m->host.vcpu_count ? m->host.vcpu_count(m->host.opaque)
                              : ferry_vcpus_count(m->host.vcpus);
}

FerryVcpu *mig_vcpu_at(FerryMigration *m, unsigned i)
{
    return m->host.vcpu_at ? m->host.vcpu_at(m->host.opaque, i) : ferry_vcpus_get(m->host.vcpus, i);
}

void mig_block_sigpipe(void)
{
    /* A write to a cut connection must fail with EPIPE on this thread, not kill the process;
     * blocking SIGPIPE per engine thread leaves the application's disposition alone. */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
}

void mig_set_status(FerryMigration *m, FerryMigStatus st)
{
    pthread_mutex_lock(&m->lock);
    bool changed = m->info.status != st;
    m->info.status = st;
    if (!ferry_mig_status_active(st) && st != FERRY_MIG_NONE && m->start_ns)
        m->info.total_time_ms = (mig_now_ns() - m->start_ns) / 1000000;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (changed && m->host.on_status)
        m->host.on_status(m->host.opaque, st);
}

void mig_fail(FerryMigration *m, const FerryError *err)
{
    pthread_mutex_lock(&m->lock);
    if (!m->info.error[0])
        snprintf(m->info.error, sizeof(m->info.error), "%s",
                 err && err->msg[0] ? err->msg : "unknown error");
    pthread_mutex_unlock(&m->lock);
}

void mig_shutdown_fds(FerryMigration *m)
{
    pthread_mutex_lock(&m->lock);
    for (unsigned i = 0; i < m->nfds; i++)
        if (m->fds[i] >= 0)
            shutdown(m->fds[i], SHUT_RDWR);
    pthread_mutex_unlock(&m->lock);
}

int mig_write_all(int fd, const void *data, size_t len, FerryError *err)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ferry_error_set(err, -errno, "return path: %s", strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int mig_read_line(int fd, char *buf, size_t size, int timeout_ms, FerryError *err)
{
    size_t n = 0;
    uint64_t deadline = mig_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (n + 1 < size) {
        int64_t left = (int64_t)(deadline - mig_now_ns()) / 1000000;
        if (timeout_ms >= 0 && left <= 0)
            return ferry_error_set(err, -ETIMEDOUT, "no answer from the peer within %d ms",
                                   timeout_ms);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms < 0 ? -1 : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        /* One byte at a time: nothing after the line may be consumed (it belongs to the
         * stream reader); these lines are a handful per migration. */
        ssize_t k = read(fd, buf + n, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return ferry_error_set(err, -errno, "reading from the peer: %s", strerror(errno));
        if (k == 0)
            return ferry_error_set(err, -ECONNRESET, "the peer closed the connection");
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return 0;
        }
        n++;
    }
    return ferry_error_set(err, -EPROTO, "line from the peer longer than %zu bytes", size);
}

FerryMigration *ferry_migration_new(const FerryMigHost *host, FerryError *err)
{
    if (!host || !host->vm || (!host->vcpus && !(host->vcpu_count && host->vcpu_at)) ||
        (!host->vcpus && (!host->stop || !host->resume))) {
        ferry_error_set(err, -EINVAL, "migration: a VM and its vCPUs are required");
        return NULL;
    }
    FerryMigration *m = calloc(1, sizeof(*m));
    if (!m) {
        ferry_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    m->host = *host;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    ferry_mig_params_default(&m->params);
    m->listen_fd = -1;
    return m;
}

static void join_engine(FerryMigration *m)
{
    pthread_mutex_lock(&m->lock);
    bool running = m->running;
    m->running = false;
    pthread_mutex_unlock(&m->lock);
    if (running)
        pthread_join(m->thread, NULL);
}

void ferry_migration_free(FerryMigration *m)
{
    if (!m)
        return;
    ferry_migration_cancel(m);
    /* An incoming side waiting for a connection or in the middle of a stream stops too: its
     * accept loop watches the flag and its sockets are shut down. */
    atomic_store(&m->cancel, true);
    mig_shutdown_fds(m);
    join_engine(m);
    if (m->listen_fd >= 0)
        close(m->listen_fd);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m);
}

int ferry_migration_set_params(FerryMigration *m, const FerryMigParams *p, FerryError *err)
{
    if (p->multifd_channels > 255)
        return ferry_error_set(err, -EINVAL, "multifd-channels %u: at most 255",
                               p->multifd_channels);
    if (p->downtime_limit_ms > 2000000)
        return ferry_error_set(err, -EINVAL, "downtime-limit %llu ms: at most 2000000",
                               (unsigned long long)p->downtime_limit_ms);
    if (p->x_test_subsection > FERRY_MIG_TEST_SUB_MANDATORY)
        return ferry_error_set(err, -EINVAL, "unknown x-ferry-test-subsection mode %u",
                               p->x_test_subsection);
    if (p->converge > FERRY_MIG_CONVERGE_THROTTLE)
        return ferry_error_set(err, -EINVAL,
                               "x-ferry-converge: unknown policy %u (0 switchover, "
                               "1 throttle)",
                               p->converge);
    if (p->max_passes < FERRY_MIG_MAX_PASSES_MIN || p->max_passes > FERRY_MIG_MAX_PASSES_MAX)
        return ferry_error_set(err, -EINVAL, "x-ferry-max-passes %u: must be %u to %u",
                               p->max_passes, FERRY_MIG_MAX_PASSES_MIN, FERRY_MIG_MAX_PASSES_MAX);
    pthread_mutex_lock(&m->lock);
    m->params = *p;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

void ferry_migration_get_params(FerryMigration *m, FerryMigParams *out)
{
    pthread_mutex_lock(&m->lock);
    *out = m->params;
    pthread_mutex_unlock(&m->lock);
}

void ferry_migration_info(FerryMigration *m, FerryMigInfo *out)
{
    pthread_mutex_lock(&m->lock);
    *out = m->info;
    if (ferry_mig_status_active(out->status) && m->start_ns)
        out->total_time_ms = (mig_now_ns() - m->start_ns) / 1000000;
    pthread_mutex_unlock(&m->lock);
}

static int begin(FerryMigration *m, bool incoming, FerryError *err)
{
    pthread_mutex_lock(&m->lock);
    if (ferry_mig_status_active(m->info.status)) {
        pthread_mutex_unlock(&m->lock);
        return ferry_error_set(err, -EBUSY, "a migration is already in progress (status %s)",
                               ferry_mig_status_name(m->info.status));
    }
    pthread_mutex_unlock(&m->lock);
    join_engine(m);
    pthread_mutex_lock(&m->lock);
    memset(&m->info, 0, sizeof(m->info));
    m->info.incoming = incoming;
    m->info.status = FERRY_MIG_NONE;
    atomic_store(&m->cancel, false);
    m->start_ns = mig_now_ns();
    m->rate_t0_ns = m->start_ns;
    m->rate_bytes0 = m->rate_pages0 = m->pages_sent = 0;
    for (unsigned i = 0; i < sizeof(m->fds) / sizeof(m->fds[0]); i++)
        m->fds[i] = -1;
    m->nfds = 0;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

int ferry_migration_start(FerryMigration *m, const char *uri, FerryError *err)
{
    FerryUri u;
    int r = ferry_uri_parse(uri, &u, err);
    if (r < 0)
        return r;
    if ((r = begin(m, false, err)) < 0)
        return r;
    if (m->host.machine) {
        mig_lock(m);
        FerryRunState rs = ferry_machine_runstate(m->host.machine);
        mig_unlock(m);
        if (rs != FERRY_RUN_RUNNING && rs != FERRY_RUN_PAUSED)
            return ferry_error_set(err, -EINVAL, "cannot migrate in state %s",
                                   ferry_runstate_name(rs));
    }
    mig_set_active(m, true);
    m->uri = u;
    mig_set_status(m, FERRY_MIG_SETUP);
    pthread_mutex_lock(&m->lock);
    m->running = true;
    r = pthread_create(&m->thread, NULL, mig_source_main, m);
    if (r)
        m->running = false;
    pthread_mutex_unlock(&m->lock);
    if (r) {
        mig_set_active(m, false);
        mig_set_status(m, FERRY_MIG_FAILED);
        return ferry_error_set(err, -r, "cannot start the migration thread");
    }
    return 0;
}

int ferry_migration_cancel(FerryMigration *m)
{
    pthread_mutex_lock(&m->lock);
    FerryMigStatus st = m->info.status;
    bool active = ferry_mig_status_active(st) && !m->info.incoming;
    pthread_mutex_unlock(&m->lock);
    if (!active)
        return 0;
    atomic_store(&m->cancel, true);
    mig_set_status(m, FERRY_MIG_CANCELLING);
    mig_shutdown_fds(m);
    return 0;
}

FerryMigStatus ferry_migration_wait(FerryMigration *m)
{
    pthread_mutex_lock(&m->lock);
    while (ferry_mig_status_active(m->info.status) ||
           (m->info.incoming && m->info.status == FERRY_MIG_NONE && m->running))
        pthread_cond_wait(&m->cond, &m->lock);
    FerryMigStatus st = m->info.status;
    pthread_mutex_unlock(&m->lock);
    join_engine(m);
    return st;
}

int ferry_migration_incoming(FerryMigration *m, const char *uri, FerryError *err)
{
    FerryUri u;
    int r = ferry_uri_parse(uri, &u, err);
    if (r < 0)
        return r;
    if ((r = begin(m, true, err)) < 0)
        return r;
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
        m->listen_fd = -1;
    }
    m->uri = u;
    m->listen_port = 0;
    if (ferry_uri_multichannel(&u)) {
        m->listen_fd = ferry_uri_listen(&u, err);
        if (m->listen_fd < 0)
            return m->listen_fd;
        m->listen_port = ferry_uri_listen_port(m->listen_fd);
    }
    mig_set_status(m, FERRY_MIG_SETUP);
    pthread_mutex_lock(&m->lock);
    m->running = true;
    r = pthread_create(&m->thread, NULL, mig_incoming_main, m);
    if (r)
        m->running = false;
    pthread_mutex_unlock(&m->lock);
    if (r) {
        mig_set_status(m, FERRY_MIG_FAILED);
        return ferry_error_set(err, -r, "cannot start the incoming migration thread");
    }
    return 0;
}

int ferry_migration_incoming_port(FerryMigration *m)
{
    return m->listen_port;
}
