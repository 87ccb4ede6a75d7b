/* Model properties for the explorer: clone, equality and hash of a whole machine. Equality and
 * hash work on one canonical byte encoding (fields one by one, no padding, no pointers). */
#include "machine-int.h"
#include "model-int.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void ferry_canon_init(FerryCanon *c)
{
    c->buf = c->small;
    c->len = 0;
    c->cap = sizeof(c->small);
    c->oom = false;
}

void ferry_canon_fini(FerryCanon *c)
{
    if (c->buf != c->small)
        free(c->buf);
}

void ferry_canon_grow(FerryCanon *c, size_t n)
{
    if (c->oom)
        return;
    size_t cap = c->cap * 2;
    while (cap < c->len + n)
        cap *= 2;
    uint8_t *nb = c->buf == c->small ? malloc(cap) : realloc(c->buf, cap);
    if (!nb) {
        c->oom = true;
        return;
    }
    if (c->buf == c->small)
        memcpy(nb, c->small, c->len);
    c->buf = nb;
    c->cap = cap;
}

void ferry_canon_str(FerryCanon *c, const char *s)
{
    size_t n = strlen(s);
    ferry_canon_u32(c, (uint32_t)n);
    ferry_canon_put(c, s, n);
}

static void canon_device(FerryCanon *c, const FerryDevice *d)
{
    ferry_canon_str(c, d->type->model);
    ferry_canon_str(c, d->id);
    ferry_canon_str(c, d->parent);
    for (int i = 0; d->type->params[i].name; i++)
        ferry_canon_u64(c, d->params[i]);
    switch (d->type->kind) {
    case FERRY_CONN_CPU:
        ferry_canon_u32(c, d->st.cpu.core_id);
        ferry_canon_u32(c, d->st.cpu.pmu);
        break;
    case FERRY_CONN_MEM:
        ferry_canon_u64(c, d->st.mem.base);
        ferry_canon_u64(c, d->st.mem.size);
        ferry_canon_u32(c, d->st.mem.node);
        break;
    case FERRY_CONN_SLOT:
        ferry_canon_u32(c, d->st.card.slot);
        ferry_canon_u32(c, d->st.card.status);
        ferry_canon_u32(c, d->st.card.ext_status);
        ferry_canon_u32(c, d->st.card.ext);
        break;
    }
}

static void canon_machine(FerryCanon *c, const FerryMachine *m)
{
    ferry_canon_str(c, m->type->name);
    ferry_canon_u32(c, m->run);
    ferry_canon_u32(c, m->migration_active);
    for (int k = 1; k < 4; k++)
        ferry_canon_u32(c, m->nslots[k]);
    for (uint32_t i = 0; i < m->nconn; i++) {
        const FerryConnector *cn = &m->conn[i];
        ferry_canon_u32(c, cn->state);
        ferry_canon_u32(c, cn->unplug_requested);
        ferry_canon_u32(c, cn->cc_pos);
        ferry_canon_u32(c, cn->dev != NULL);
        if (cn->dev)
            canon_device(c, cn->dev);
    }
    if (m->policy.edge_notify)
        ferry_canon_u32(c, m->edge_latch); /* state only under the seeded edge policy */
    const FerryHotplugState *hp = &m->hp;
    ferry_canon_u32(c, hp->ready);
    ferry_canon_u32(c, hp->selector);
    ferry_canon_u32(c, hp->arg);
    ferry_canon_u32(c, hp->status);
    for (int i = 0; i < 3; i++)
        ferry_canon_u32(c, hp->result[i]);
    ferry_canon_put(c, hp->window, sizeof(hp->window));
    ferry_canon_u32(c, (uint32_t)hp->events.len);
    FERRY_LIST_FOREACH(&hp->events, l)
    {
        const FerryHotplugEvent *e = ferry_container_of(l, FerryHotplugEvent, link);
        ferry_canon_u32(c, e->action);
        ferry_canon_u32(c, e->kind);
        ferry_canon_u32(c, e->index);
    }
}

FerryMachine *ferry_machine_clone(const FerryMachine *m)
{
    FerryMachine *n = malloc(sizeof(*n));
    if (!n)
        return NULL;
    *n = *m;
    n->irq = NULL;
    n->irq_opaque = NULL;
    n->deleted = NULL;
    n->deleted_opaque = NULL;
    ferry_list_init(&n->hp.events);
    ferry_list_init(&n->stash);
    n->conn = malloc(m->nconn * sizeof(*n->conn));
    if (!n->conn)
        goto err_free_machine;
    memcpy(n->conn, m->conn, m->nconn * sizeof(*n->conn));
    for (uint32_t i = 0; i < m->nconn; i++)
        n->conn[i].dev = NULL;
    for (uint32_t i = 0; i < m->nconn; i++) {
        if (!m->conn[i].dev)
            continue;
        n->conn[i].dev = malloc(sizeof(FerryDevice));
        if (!n->conn[i].dev)
            goto err_free_clone;
        *n->conn[i].dev = *m->conn[i].dev;
    }
    FERRY_LIST_FOREACH(&m->hp.events, l)
    {
        const FerryHotplugEvent *e = ferry_container_of(l, FerryHotplugEvent, link);
        FerryHotplugEvent *ne = malloc(sizeof(*ne));
        if (!ne)
            goto err_free_clone;
        *ne = *e;
        ferry_list_push_tail(&n->hp.events, &ne->link);
    }
    n->line = ferry_machine_irq_level(n);
    return n;

err_free_clone:
    ferry_machine_free(n);
    return NULL;
err_free_machine:
    free(n);
    return NULL;
}

static bool device_equal(const FerryDevice *a, const FerryDevice *b)
{
    if (a->type != b->type || strcmp(a->id, b->id) || strcmp(a->parent, b->parent) ||
        memcmp(a->params, b->params, sizeof(a->params)))
        return false;
    switch (a->type->kind) {
    case FERRY_CONN_CPU:
        return a->st.cpu.core_id == b->st.cpu.core_id && a->st.cpu.pmu == b->st.cpu.pmu;
    case FERRY_CONN_MEM:
        return a->st.mem.base == b->st.mem.base && a->st.mem.size == b->st.mem.size &&
               a->st.mem.node == b->st.mem.node;
    case FERRY_CONN_SLOT:
        return a->st.card.slot == b->st.card.slot && a->st.card.status == b->st.card.status &&
               a->st.card.ext_status == b->st.card.ext_status && a->st.card.ext == b->st.card.ext;
    }
    return false;
}

/* Structural, field by field (same fields as the canonical encoding, without building it). */
bool ferry_machine_equal(const FerryMachine *a, const FerryMachine *b)
{
    if (a == b)
        return true;
    if (a->type != b->type || a->run != b->run || a->migration_active != b->migration_active ||
        memcmp(a->nslots, b->nslots, sizeof(a->nslots)) || a->nconn != b->nconn)
        return false;
    for (uint32_t i = 0; i < a->nconn; i++) {
        const FerryConnector *x = &a->conn[i], *y = &b->conn[i];
        if (x->state != y->state || x->unplug_requested != y->unplug_requested ||
            x->cc_pos != y->cc_pos || !x->dev != !y->dev ||
            (x->dev && !device_equal(x->dev, y->dev)))
            return false;
    }
    if ((a->policy.edge_notify || b->policy.edge_notify) && a->edge_latch != b->edge_latch)
        return false; /* state only under the seeded edge policy, as in the hash */
    const FerryHotplugState *p = &a->hp, *q = &b->hp;
    if (p->ready != q->ready || p->selector != q->selector || p->arg != q->arg ||
        p->status != q->status || memcmp(p->result, q->result, sizeof(p->result)) ||
        memcmp(p->window, q->window, sizeof(p->window)) || p->events.len != q->events.len)
        return false;
    for (const FerryLink *l = p->events.head, *k = q->events.head; l; l = l->next, k = k->next) {
        const FerryHotplugEvent *e = ferry_container_of(l, FerryHotplugEvent, link);
        const FerryHotplugEvent *f = ferry_container_of(k, FerryHotplugEvent, link);
        if (e->action != f->action || e->kind != f->kind || e->index != f->index)
            return false;
    }
    return true;
}

uint64_t ferry_machine_hash(const FerryMachine *m)
{
    FerryCanon c;
    ferry_canon_init(&c);
    canon_machine(&c, m);
    uint64_t h = XXH3_64bits(c.buf, c.len);
    ferry_canon_fini(&c);
    return h;
}
