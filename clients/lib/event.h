/*
 * event.h - libfonte's events as the application sees them: a
 * fonte_event_t wraps a decoded Fonte__Event; a fonte_event_list_t owns
 * the events of a fetch. The accessors are in event.c; this header is
 * what the rest of the library uses to make and free them.
 */
#ifndef FONTE_EVENT_H
#define FONTE_EVENT_H

#include "codec.h"
#include "fonte/fonte.h"

struct fonte_event {
    Fonte__Event *pb; /* owned; freed with codec_event_free */
};

/* Wraps pb (taking ownership, also on failure: then pb is freed). NULL
 * on allocation failure. */
fonte_event_t *event_new(Fonte__Event *pb);
/* What an event decoded from `encoded` wire bytes holds in memory,
 * about (the inbox counts this against inbox_max_bytes). */
size_t event_mem_estimate(const Fonte__Event *pb, size_t encoded);
void event_destroy(fonte_event_t **e_p);

/* An empty list; NULL on allocation failure. */
fonte_event_list_t *event_list_new(void);
/* Appends pb, taking ownership (also on failure). FONTE_ENOMEM. */
fonte_err event_list_take(fonte_event_list_t *l, Fonte__Event *pb);
/* Appends a copy of cycle. FONTE_ENOMEM. */
fonte_err event_list_add_cycle(fonte_event_list_t *l, const char *cycle);
/* Counts n more cycles the listener broke and did not list. */
void event_list_add_cycles_omitted(fonte_event_list_t *l, uint64_t n);

#endif
