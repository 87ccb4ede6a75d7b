/* The hotplug controller's register block (docs/guest-interface.md): commands the guest issues
 * to fetch events, enumerate, and drive connectors, plus the configure-connector token walk. */
#include "ferry/machine/hotplug.h"

#include "machine-int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- configure-connector description ----
 * A device's description is a fixed token sequence derived from its configuration, so the
 * cursor (cc_pos) is all a migration needs to resume a session mid-walk (S5). */

static void tok_node(FerryToken *t, const char *name)
{
    t->type = FERRY_HP_TOK_NODE_START;
    snprintf(t->name, sizeof(t->name), "%s", name);
}

static void tok_str(FerryToken *t, const char *name, const char *value)
{
    t->type = FERRY_HP_TOK_PROP;
    snprintf(t->name, sizeof(t->name), "%s", name);
    size_t len = strlen(value) + 1; /* with NUL, like a flattened-device-tree string */
    assert(len <= sizeof(t->value));
    memcpy(t->value, value, len);
    t->value_len = (uint32_t)len;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void tok_u32(FerryToken *t, const char *name, uint32_t v)
{
    t->type = FERRY_HP_TOK_PROP;
    snprintf(t->name, sizeof(t->name), "%s", name);
    put_le(t->value, v, 4);
    t->value_len = 4;
}

static uint32_t device_tokens(const FerryDevice *d, FerryToken *out, uint32_t max)
{
    FerryToken t[8];
    memset(t, 0, sizeof(t));
    uint32_t n = 0;
    char node[FERRY_HP_NAME_MAX];
    switch (d->type->kind) {
    case FERRY_CONN_CPU:
        snprintf(node, sizeof(node), "cpu@%u", d->st.cpu.core_id);
        tok_node(&t[n++], node);
        tok_str(&t[n++], "device_type", "cpu");
        tok_u32(&t[n++], "reg", d->st.cpu.core_id);
        tok_str(&t[n++], "model", d->type->model);
        tok_u32(&t[n++], "pmu", d->st.cpu.pmu);
        break;
    case FERRY_CONN_MEM:
        snprintf(node, sizeof(node), "memory@%llx", (unsigned long long)d->st.mem.base);
        tok_node(&t[n++], node);
        tok_str(&t[n++], "device_type", "memory");
        t[n].type = FERRY_HP_TOK_PROP;
        snprintf(t[n].name, sizeof(t[n].name), "reg");
        put_le(t[n].value, d->st.mem.base, 8);
        put_le(t[n].value + 8, d->st.mem.size, 8);
        t[n++].value_len = 16;
        tok_u32(&t[n++], "numa-node", d->st.mem.node);
        break;
    case FERRY_CONN_SLOT:
        snprintf(node, sizeof(node), "card@%u", d->st.card.slot);
        tok_node(&t[n++], node);
        tok_str(&t[n++], "model", d->type->model);
        tok_u32(&t[n++], "slot", d->st.card.slot);
        tok_u32(&t[n++], "ext-status", d->st.card.ext);
        break;
    }
    t[n++].type = FERRY_HP_TOK_NODE_END;
    assert(n <= 8);
    for (uint32_t i = 0; i < n && i < max; i++)
        out[i] = t[i];
    return n;
}

uint32_t ferry_device_token_count(const FerryDevice *d)
{
    return device_tokens(d, NULL, 0);
}

void ferry_device_token(const FerryDevice *d, uint32_t pos, FerryToken *t)
{
    FerryToken all[8];
    uint32_t n = device_tokens(d, all, 8);
    assert(pos < n);
    *t = all[pos];
}

/* ---- commands ---- */

/* Guest transitions of a logical connector: a table of (from, to) -> action. */
typedef enum ConnAction { CA_NONE, CA_ALLOCATE, CA_UNISOLATE, CA_ISOLATE, CA_RELEASE } ConnAction;
static const ConnAction conn_table[5][5] = {
    [FERRY_CONN_UNUSABLE][FERRY_CONN_AVAILABLE] = CA_ALLOCATE,
    [FERRY_CONN_AVAILABLE][FERRY_CONN_UNISOLATE] = CA_UNISOLATE,
    [FERRY_CONN_AVAILABLE][FERRY_CONN_UNUSABLE] = CA_RELEASE,
    [FERRY_CONN_UNISOLATE][FERRY_CONN_AVAILABLE] = CA_ISOLATE,
    [FERRY_CONN_CONFIGURED][FERRY_CONN_AVAILABLE] = CA_ISOLATE,
};

static uint32_t cmd_set_state(FerryMachine *m, FerryConnector *c, uint32_t target)
{
    if (target < FERRY_CONN_UNUSABLE || target > FERRY_CONN_CONFIGURED)
        return FERRY_HP_ST_BAD_ARG;
    assert(c->state >= FERRY_CONN_UNUSABLE && c->state <= FERRY_CONN_CONFIGURED);
    switch (conn_table[c->state][target]) {
    case CA_NONE:
        return FERRY_HP_ST_BAD_STATE;
    case CA_ALLOCATE:
        if (!c->dev)
            return FERRY_HP_ST_NO_DEVICE;
        if (c->unplug_requested)
            return FERRY_HP_ST_UNPLUG_PENDING;
        c->state = FERRY_CONN_AVAILABLE;
        return FERRY_HP_ST_OK;
    case CA_UNISOLATE:
        if (c->unplug_requested)
            return FERRY_HP_ST_UNPLUG_PENDING;
        c->state = FERRY_CONN_UNISOLATE;
        c->cc_pos = 0;
        return FERRY_HP_ST_OK;
    case CA_ISOLATE:
        c->state = FERRY_CONN_AVAILABLE;
        c->cc_pos = 0; /* isolating abandons any configure-connector session */
        return FERRY_HP_ST_OK;
    case CA_RELEASE:
        c->state = FERRY_CONN_UNUSABLE;
        if (c->unplug_requested)
            ferry_machine_finalize_unplug(m, c); /* host finalizes: DEVICE_DELETED */
        return FERRY_HP_ST_OK;
    }
    return FERRY_HP_ST_BAD_STATE;
}

static uint32_t cmd_cc_step(FerryHotplugState *hp, FerryConnector *c)
{
    if (c->state != FERRY_CONN_UNISOLATE && c->state != FERRY_CONN_CONFIGURED)
        return FERRY_HP_ST_BAD_STATE;
    assert(c->dev);
    uint32_t n = ferry_device_token_count(c->dev);
    assert(c->cc_pos <= n);
    if (c->cc_pos == n) {
        hp->result[0] = FERRY_HP_TOK_DONE;
        c->state = FERRY_CONN_CONFIGURED;
        c->cc_pos = 0;
        return FERRY_HP_ST_OK;
    }
    FerryToken t;
    ferry_device_token(c->dev, c->cc_pos++, &t);
    size_t name_len = strlen(t.name);
    memcpy(hp->window + FERRY_HP_WINDOW_NAME, t.name, name_len + 1);
    memcpy(hp->window + FERRY_HP_WINDOW_VALUE, t.value, t.value_len);
    hp->result[0] = t.type;
    hp->result[1] = (uint32_t)name_len;
    hp->result[2] = t.value_len;
    return FERRY_HP_ST_OK;
}

static uint32_t run_command(FerryMachine *m, uint32_t cmd)
{
    FerryHotplugState *hp = &m->hp;
    memset(hp->result, 0, sizeof(hp->result));
    if (cmd == FERRY_HP_CMD_CC_STEP)
        memset(hp->window, 0, sizeof(hp->window));
    switch (cmd) {
    case FERRY_HP_CMD_READY:
        hp->ready = true;
        ferry_machine_update_line(m);
        return FERRY_HP_ST_OK;
    case FERRY_HP_CMD_FETCH_EVENT: {
        FerryLink *l = ferry_list_pop_head(&hp->events);
        if (!l)
            return FERRY_HP_ST_EMPTY;
        FerryHotplugEvent *e = ferry_container_of(l, FerryHotplugEvent, link);
        hp->result[0] = e->action;
        hp->result[1] = e->kind;
        hp->result[2] = e->index;
        FerryConnector *c = ferry_machine_conn_by_index(m, e->index);
        bool release = e->action == FERRY_HP_ACTION_REMOVE && c && c->dev && c->unplug_requested &&
                       c->state == FERRY_CONN_UNUSABLE;
        free(e);
        /* Removal of a device the guest never allocated: once the guest sees the remove event it
         * has finished its add job (events are handled in order), so the host releases it. */
        if (release)
            ferry_machine_finalize_unplug(m, c);
        ferry_machine_update_line(m);
        return FERRY_HP_ST_OK;
    }
    case FERRY_HP_CMD_ENUM: {
        uint32_t n = hp->selector;
        for (uint32_t i = 0; i < m->nconn; i++) {
            const FerryConnector *c = &m->conn[i];
            if (c->state != FERRY_CONN_CONFIGURED)
                continue;
            if (n--)
                continue;
            hp->result[0] = c->index;
            hp->result[1] = c->kind;
            return FERRY_HP_ST_OK;
        }
        return FERRY_HP_ST_EMPTY;
    }
    case FERRY_HP_CMD_GET_STATE:
    case FERRY_HP_CMD_SET_STATE:
    case FERRY_HP_CMD_CC_STEP: {
        FerryConnector *c = ferry_machine_conn_by_index(m, hp->selector);
        if (!c)
            return FERRY_HP_ST_NO_CONNECTOR;
        if (cmd == FERRY_HP_CMD_SET_STATE)
            return cmd_set_state(m, c, hp->arg);
        if (cmd == FERRY_HP_CMD_CC_STEP)
            return cmd_cc_step(hp, c);
        hp->result[0] = c->state;
        hp->result[1] = (c->dev ? FERRY_HP_FLAG_PRESENT : 0) |
                        (c->unplug_requested ? FERRY_HP_FLAG_UNPLUG_REQUESTED : 0) |
                        (c->cc_pos ? FERRY_HP_FLAG_SESSION : 0);
        hp->result[2] = c->kind;
        return FERRY_HP_ST_OK;
    }
    default:
        return FERRY_HP_ST_BAD_COMMAND;
    }
}

static uint32_t mask(unsigned size)
{
    return size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
}

uint32_t ferry_hotplug_io_read(FerryMachine *m, uint16_t offset, unsigned size)
{
    if (size != 1 && size != 2 && size != 4)
        return 0xffffffffu;
    if (offset + size > FERRY_HP_IO_SIZE)
        return mask(size);
    if (offset >= FERRY_HP_WINDOW) {
        uint32_t v = 0;
        for (unsigned i = 0; i < size; i++)
            v |= (uint32_t)m->hp.window[offset - FERRY_HP_WINDOW + i] << (8 * i);
        return v;
    }
    if (size != 4 || (offset & 3))
        return mask(size);
    const FerryHotplugState *hp = &m->hp;
    switch (offset) {
    case FERRY_HP_REG_MAGIC:
        return FERRY_HP_MAGIC_VALUE;
    case FERRY_HP_REG_VERSION:
        return FERRY_HP_IFACE_VERSION;
    case FERRY_HP_REG_STATUS:
        return hp->status;
    case FERRY_HP_REG_SELECTOR:
        return hp->selector;
    case FERRY_HP_REG_ARG:
        return hp->arg;
    case FERRY_HP_REG_RESULT0:
        return hp->result[0];
    case FERRY_HP_REG_RESULT1:
        return hp->result[1];
    case FERRY_HP_REG_RESULT2:
        return hp->result[2];
    case FERRY_HP_REG_PENDING:
        return (hp->events.len ? FERRY_HP_PENDING_EVENTS : 0) |
               (hp->ready ? FERRY_HP_PENDING_READY : 0) |
               (ferry_machine_irq_level(m) ? FERRY_HP_PENDING_LINE : 0);
    case FERRY_HP_REG_NCONN:
        return m->nconn;
    default:
        return 0xffffffffu;
    }
}

void ferry_hotplug_io_write(FerryMachine *m, uint16_t offset, unsigned size, uint32_t value)
{
    if (size != 4 || (offset & 3) || offset + size > FERRY_HP_WINDOW)
        return;
    switch (offset) {
    case FERRY_HP_REG_CMD:
        m->hp.status = run_command(m, value);
        break;
    case FERRY_HP_REG_SELECTOR:
        m->hp.selector = value;
        break;
    case FERRY_HP_REG_ARG:
        m->hp.arg = value;
        break;
    default:
        break;
    }
}

uint32_t ferry_hotplug_pio_read(void *machine, uint16_t offset, unsigned size)
{
    return ferry_hotplug_io_read(machine, offset, size);
}

void ferry_hotplug_pio_write(void *machine, uint16_t offset, unsigned size, uint32_t value)
{
    ferry_hotplug_io_write(machine, offset, size, value);
}
