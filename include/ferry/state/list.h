/* Intrusive doubly-linked lists for device state (event queues, pending requests).
 * The codec saves and loads these directly (FERRY_LIST), so no pre_save copy into an array. */
#ifndef FERRY_STATE_LIST_H
#define FERRY_STATE_LIST_H

#include <stddef.h>

typedef struct FerryLink {
    struct FerryLink *next;
    struct FerryLink *prev;
} FerryLink;

typedef struct FerryList {
    FerryLink *head;
    FerryLink *tail;
    size_t len;
} FerryList;

#define ferry_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define FERRY_LIST_FOREACH(list, it)          for (FerryLink *it = (list)->head; it; it = it->next)

static inline void ferry_list_init(FerryList *l)
{
    l->head = l->tail = NULL;
    l->len = 0;
}

static inline void ferry_list_push_tail(FerryList *l, FerryLink *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
    l->len++;
}

static inline void ferry_list_remove(FerryList *l, FerryLink *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->next = n->prev = NULL;
    l->len--;
}

static inline FerryLink *ferry_list_pop_head(FerryList *l)
{
    FerryLink *n = l->head;
    if (n)
        ferry_list_remove(l, n);
    return n;
}

#endif
