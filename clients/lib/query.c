/*
 * query.c - a client's questions to the listener's query endpoint:
 * fetch (ReplayRequest RETURN, paged), request_replay (REPUBLISH) and
 * status (StatusRequest).
 *
 * fonte_fetch is a loop over the paged iterator (fonte_fetch_iter_*),
 * which callers that stream a large history use directly.
 *
 * Lazy Pirate (the ZeroMQ guide's reliable REQ): each page is one
 * request on a REQ socket made in the calling thread; if no reply comes
 * within query_timeout_ms the socket is closed (REQ cannot send twice
 * without a reply) and a new one retries, query_retries times in all.
 * A dead listener therefore costs timeout * retries and FONTE_ETIMEOUT,
 * never a hang. Sockets have LINGER 0, so an abandoned request is gone
 * at once, and MAXMSGSIZE max_reply, so a huge reply cannot exhaust
 * memory.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "client.h"
#include "event.h"
#include "log.h"

/* The listener's word, as a fonte_err. */
static fonte_err
status_err(Fonte__Reply__Status s)
{
    switch (s) {
    case FONTE__REPLY__STATUS__OK:
        return FONTE_OK;
    case FONTE__REPLY__STATUS__NOT_FOUND:
        return FONTE_ENOTFOUND;
    case FONTE__REPLY__STATUS__BAD_REQUEST:
        return FONTE_EREQUEST;
    case FONTE__REPLY__STATUS__LIMIT:
        return FONTE_ELIMIT;
    case FONTE__REPLY__STATUS__UNAVAILABLE:
        return FONTE_EUNAVAILABLE;
    default:
        return FONTE_EINTERNAL;
    }
}

/* Polls it for up to timeout_ms, the whole of it: a signal that
 * interrupts the poll (EINTR) does not end the wait, and neither does a
 * poll that times out early (libzmq counts its timeout on a clock of
 * its own, in whole milliseconds, and returned up to a millisecond
 * before ours said the time was up); the wait goes on for what is left.
 * For the first spin_us of it the thread does not sleep: it polls with
 * no timeout, again and again (query_spin_us: a reply that comes while
 * the thread sleeps waits for it to be woken, which on a VM whose vCPU
 * was halted costs tens of microseconds). zmq_poll's result: > 0 ready,
 * 0 timed out, < 0 error. */
static int
wait_reply(zmq_pollitem_t *it, int timeout_ms, int spin_us)
{
    int64_t start = fonte_mono_us();
    int64_t end = start + (int64_t) timeout_ms * 1000;
    int64_t spin_end = start + (spin_us > 0 ? spin_us : 0);
    for (;;) {
        int64_t now = fonte_mono_us();
        int64_t left_us = end - now;
        int64_t left = now < spin_end ? 0 : (left_us + 999) / 1000;
        int n = zmq_poll(it, 1, left > 0 ? (long) left : 0);
        if (n > 0 || (n < 0 && errno != EINTR))
            return n;
        if (left_us <= 0)
            return 0; /* the whole of it waited: timed out */
    }
}

/* Sends req and waits for one Reply, with retries: query_retries tries
 * of query_timeout_ms each (Lazy Pirate). A request that must not run
 * twice (once: a republish, which the listener cannot tell from a second
 * one) is sent once, and waited for as long as all the tries. On
 * FONTE_OK the caller owns *rep_p (free with fonte__reply__free_unpacked).
 * *sock_p is the REQ socket to reuse between pages (NULL: make one); the
 * caller closes it. */
static fonte_err
ask(fonte_client_t *c, void **sock_p, const Fonte__Request *req, bool once,
    Fonte__Reply **rep_p)
{
    codec_buf_t buf = { 0 };
    fonte_err rc;
    int tries = c->opts.query_retries;
    int timeout_ms = c->opts.query_timeout_ms;

    *rep_p = NULL;
    if ((rc = codec_pack(&req->base, &buf)) != FONTE_OK)
        return rc;
    if (once && tries > 1) {
        timeout_ms = timeout_ms > INT_MAX / tries ? INT_MAX
                                                  : timeout_ms * tries;
        tries = 1;
    }
    rc = FONTE_ETIMEOUT;
    for (int try = 0; try < tries; try++) {
        if (*sock_p == NULL && (*sock_p = client_query_take(c)) == NULL) {
            rc = FONTE_EIO;
            break;
        }
        if (zmq_send(*sock_p, buf.data, buf.len, 0) < 0) {
            rc = FONTE_EIO;
            break;
        }
        zmq_pollitem_t it = { *sock_p, 0, ZMQ_POLLIN, 0 };
        int n = wait_reply(&it, timeout_ms, c->opts.query_spin_us);
        if (n > 0) {
            zmq_msg_t msg;
            int more = 0;
            size_t more_len = sizeof more;
            zmq_msg_init(&msg);
            if (zmq_msg_recv(&msg, *sock_p, 0) < 0) {
                zmq_msg_close(&msg);
                rc = FONTE_EIO;
                break;
            }
            zmq_getsockopt(*sock_p, ZMQ_RCVMORE, &more, &more_len);
            if (more) {
                rc = FONTE_EFRAMES; /* REQ would now hold the rest: reopen */
                zmq_msg_close(&msg);
                zmq_close(*sock_p);
                *sock_p = NULL;
                break;
            }
            rc = codec_reply_decode(zmq_msg_data(&msg), zmq_msg_size(&msg),
                                    &c->lim, rep_p);
            /* an event in it that breaks the rules is the listener's
             * fault, not the caller's arguments' (FONTE_ETYPE...) */
            if (rc != FONTE_OK && rc != FONTE_ENOMEM)
                rc = FONTE_EDECODE;
            zmq_msg_close(&msg);
            break;
        }
        /* No reply (or poll failed): Lazy Pirate - drop the socket, the
         * request with it, and try again on a fresh one. */
        zmq_close(*sock_p);
        *sock_p = NULL;
        rc = n < 0 ? FONTE_EIO : FONTE_ETIMEOUT;
    }
    /* Only a socket that got its reply may serve another request. */
    if (rc != FONTE_OK && *sock_p != NULL) {
        zmq_close(*sock_p);
        *sock_p = NULL;
    }
    codec_buf_free(&buf);
    return rc;
}

/* Checks the caller's selection before anything is sent. */
static fonte_err
check_select(const fonte_client_t *c, const char *object,
             const fonte_fetch_opts_t *o)
{
    fonte_err rc;

    if (object == NULL)
        return FONTE_EOBJECT;
    if ((rc = codec_check_object(object, strlen(object),
                                 c->lim.max_object)) != FONTE_OK)
        return rc;
    if (o->n_types > CODEC_TYPES_MAX)
        return FONTE_ELIMIT;
    if (o->types == NULL && o->n_types > 0)
        return FONTE_EINVAL;
    for (size_t i = 0; i < o->n_types; i++) {
        if (o->types[i] == NULL)
            return FONTE_ETYPE;
        if ((rc = codec_check_type(o->types[i], strlen(o->types[i]),
                                   c->lim.max_type)) != FONTE_OK)
            return rc;
    }
    if ((unsigned) o->order > FONTE_ORDER_OBJECTS)
        return FONTE_EINVAL;
    return FONTE_OK;
}

static void
fill_select(Fonte__ReplayRequest *r, const char *object,
            const fonte_fetch_opts_t *o)
{
    r->object = (char *) object;
    r->skip_dependencies = o->skip_dependencies;
    r->dependents = o->dependents;
    r->after_seq = o->after_seq;
    r->until_seq = o->until_seq;
    r->types = (char **) o->types;
    r->n_types = o->n_types;
    r->order = (Fonte__ReplayRequest__Order) o->order;
    r->page_size = o->page_size;
}

FONTE_EXPORT void
fonte_fetch_opts_init(fonte_fetch_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->order = FONTE_ORDER_CAUSAL;
}

FONTE_EXPORT void
fonte_replay_opts_init(fonte_replay_opts_t *o)
{
    memset(o, 0, sizeof *o);
    fonte_fetch_opts_init(&o->select);
}

/* Moves the events and cycles of one page into l. */
static fonte_err
take_page(fonte_event_list_t *l, Fonte__ReplayReply *page)
{
    fonte_err rc = FONTE_OK;

    for (size_t i = 0; i < page->n_events; i++) {
        Fonte__Event *pb = page->events[i];
        page->events[i] = NULL;
        if (rc == FONTE_OK)
            rc = event_list_take(l, pb);
        else
            codec_event_free(&pb);
    }
    page->n_events = 0;
    for (size_t i = 0; i < page->n_cycles && rc == FONTE_OK; i++)
        rc = event_list_add_cycle(l, page->cycles[i]);
    event_list_add_cycles_omitted(l, page->cycles_omitted);
    return rc;
}

/* A paged fetch: the request (with its own copies of the object and
 * types), the cursor of the next page and the REQ socket reused between
 * pages. */
struct fonte_fetch_iter {
    fonte_client_t *c;
    Fonte__Request req;
    Fonte__ReplayRequest rr;
    char *object;
    char **types;
    size_t n_types;
    uint8_t *cursor;
    void *sock;
    uint64_t total;
    uint64_t received, pages; /* so far: bounded by total */
    bool done;
};

FONTE_EXPORT fonte_err
fonte_fetch_iter_new(fonte_client_t *c, const char *object,
                     const fonte_fetch_opts_t *opts, fonte_fetch_iter_t **it_p)
{
    fonte_fetch_opts_t dflt;
    fonte_fetch_iter_t *it;
    fonte_err rc;

    if (it_p == NULL || c == NULL)
        return FONTE_EINVAL;
    *it_p = NULL;
    if (opts == NULL) {
        fonte_fetch_opts_init(&dflt);
        opts = &dflt;
    }
    if ((rc = check_select(c, object, opts)) != FONTE_OK)
        return rc;
    if ((it = calloc(1, sizeof *it)) == NULL)
        return FONTE_ENOMEM;
    it->c = c;
    if ((it->object = strdup(object)) == NULL)
        goto nomem;
    if (opts->n_types > 0) {
        if ((it->types = calloc(opts->n_types, sizeof *it->types)) == NULL)
            goto nomem;
        it->n_types = opts->n_types;
        for (size_t i = 0; i < opts->n_types; i++)
            if ((it->types[i] = strdup(opts->types[i])) == NULL)
                goto nomem;
    }
    fonte__request__init(&it->req);
    fonte__replay_request__init(&it->rr);
    fill_select(&it->rr, it->object, opts);
    it->rr.types = it->types;
    it->rr.mode = FONTE__REPLAY_REQUEST__MODE__RETURN;
    it->req.body_case = FONTE__REQUEST__BODY_REPLAY;
    it->req.replay = &it->rr;
    *it_p = it;
    return FONTE_OK;

nomem:
    fonte_fetch_iter_destroy(&it);
    return FONTE_ENOMEM;
}

/* Asks for the next page and appends its events and cycles to l. On an
 * error the cursor is unchanged (the same page can be asked again). */
static fonte_err
iter_page(fonte_fetch_iter_t *it, fonte_event_list_t *l)
{
    Fonte__Reply *rep = NULL;
    fonte_err rc;

    if ((rc = ask(it->c, &it->sock, &it->req, false, &rep)) != FONTE_OK)
        return rc;
    if ((rc = status_err(rep->status)) != FONTE_OK)
        goto out;
    rc = FONTE_EDECODE;
    if (rep->body_case != FONTE__REPLY__BODY_REPLAY || rep->replay == NULL)
        goto out;
    Fonte__ReplayReply *page = rep->replay;
    size_t got = page->n_events;
    /* A listener that goes on past the total it announced (a page that
     * does not move the cursor, more events or more pages than total)
     * would keep a fetch going, and growing, forever: refused. Its
     * total is the same on every page, and every page but the last
     * holds at least one event. */
    if (it->pages > 0 && page->total != it->total)
        goto out;
    if (got > page->total - it->received || it->pages > page->total)
        goto out;
    if (page->cursor.len != 0 && it->cursor != NULL &&
        it->rr.cursor.len == page->cursor.len &&
        memcmp(it->cursor, page->cursor.data, page->cursor.len) == 0)
        goto out;
    if ((rc = take_page(l, page)) != FONTE_OK)
        goto out;
    it->total = page->total;
    it->received += got;
    it->pages++;
    if (page->cursor.len == 0) {
        it->done = true;
        goto out;
    }
    uint8_t *cur = malloc(page->cursor.len);
    if (cur == NULL) {
        rc = FONTE_ENOMEM;
        goto out;
    }
    memcpy(cur, page->cursor.data, page->cursor.len);
    free(it->cursor);
    it->cursor = cur;
    it->rr.cursor.data = cur;
    it->rr.cursor.len = page->cursor.len;
out:
    fonte__reply__free_unpacked(rep, NULL);
    return rc;
}

FONTE_EXPORT fonte_err
fonte_fetch_iter_next(fonte_fetch_iter_t *it, fonte_event_list_t **page_p)
{
    fonte_event_list_t *l;
    fonte_err rc;

    if (it == NULL || page_p == NULL)
        return FONTE_EINVAL;
    *page_p = NULL;
    if (it->done)
        return FONTE_OK;
    if ((l = event_list_new()) == NULL)
        return FONTE_ENOMEM;
    if ((rc = iter_page(it, l)) != FONTE_OK) {
        fonte_event_list_destroy(&l);
        return rc;
    }
    *page_p = l;
    return FONTE_OK;
}

FONTE_EXPORT uint64_t
fonte_fetch_iter_total(const fonte_fetch_iter_t *it)
{
    return it != NULL ? it->total : 0;
}

FONTE_EXPORT void
fonte_fetch_iter_destroy(fonte_fetch_iter_t **it_p)
{
    if (it_p == NULL || *it_p == NULL)
        return;
    fonte_fetch_iter_t *it = *it_p;
    client_query_give(it->c, it->sock);
    for (size_t i = 0; it->types != NULL && i < it->n_types; i++)
        free(it->types[i]);
    free(it->types);
    free(it->object);
    free(it->cursor);
    free(it);
    *it_p = NULL;
}

FONTE_EXPORT fonte_err
fonte_fetch(fonte_client_t *c, const char *object,
            const fonte_fetch_opts_t *opts, fonte_event_list_t **list_p)
{
    fonte_fetch_iter_t *it = NULL;
    fonte_event_list_t *l = NULL;
    fonte_err rc;

    if (list_p == NULL || c == NULL)
        return FONTE_EINVAL;
    *list_p = NULL;
    if ((rc = fonte_fetch_iter_new(c, object, opts, &it)) != FONTE_OK)
        return rc;
    if ((l = event_list_new()) == NULL) {
        rc = FONTE_ENOMEM;
        goto fail;
    }
    while (!it->done)
        if ((rc = iter_page(it, l)) != FONTE_OK)
            goto fail;
    fonte_fetch_iter_destroy(&it);
    *list_p = l;
    return FONTE_OK;

fail:
    fonte_fetch_iter_destroy(&it);
    fonte_event_list_destroy(&l);
    return rc;
}

FONTE_EXPORT fonte_err
fonte_request_replay(fonte_client_t *c, const char *object,
                     const fonte_replay_opts_t *opts,
                     fonte_replay_ticket_t *ticket)
{
    Fonte__Request req = FONTE__REQUEST__INIT;
    Fonte__ReplayRequest rr = FONTE__REPLAY_REQUEST__INIT;
    fonte_replay_opts_t dflt;
    Fonte__Reply *rep = NULL;
    void *sock = NULL;
    fonte_err rc;

    if (c == NULL)
        return FONTE_EINVAL;
    if (ticket != NULL)
        memset(ticket, 0, sizeof *ticket);
    if (opts == NULL) {
        fonte_replay_opts_init(&dflt);
        opts = &dflt;
    }
    if ((rc = check_select(c, object, &opts->select)) != FONTE_OK)
        return rc;
    const char *target = opts->target != NULL ? opts->target : c->service;
    if (target[0] != '\0' &&
        (rc = codec_check_producer(target, strlen(target))) != FONTE_OK)
        return rc;
    const char *reason = opts->reason != NULL ? opts->reason : "";
    if (strlen(reason) > CODEC_TEXT_MAX)
        return FONTE_EFIELD;
    if (!codec_utf8_valid(reason, strlen(reason)))
        return FONTE_EUTF8;

    fill_select(&rr, object, &opts->select);
    rr.mode = FONTE__REPLAY_REQUEST__MODE__REPUBLISH;
    rr.target = (char *) target;
    rr.rate = opts->rate;
    rr.reason = (char *) reason;
    req.body_case = FONTE__REQUEST__BODY_REPLAY;
    req.replay = &rr;

    rc = ask(c, &sock, &req, true, &rep); /* never twice */
    client_query_give(c, sock);
    if (rc != FONTE_OK)
        return rc;
    if ((rc = status_err(rep->status)) == FONTE_OK) {
        if (rep->body_case != FONTE__REPLY__BODY_REPLAY || !rep->replay)
            rc = FONTE_EDECODE; /* an answer to something else */
        else if (ticket != NULL) {
            snprintf(ticket->replay_id, sizeof ticket->replay_id, "%s",
                     rep->replay->replay_id);
            ticket->total = rep->replay->total;
            uint64_t n = rep->replay->n_cycles;
            n += rep->replay->cycles_omitted < UINT32_MAX
                     ? rep->replay->cycles_omitted
                     : UINT32_MAX;
            ticket->cycles = n < UINT32_MAX ? (uint32_t) n : UINT32_MAX;
        }
    }
    fonte__reply__free_unpacked(rep, NULL);
    return rc;
}

FONTE_EXPORT fonte_err
fonte_status(fonte_client_t *c, fonte_status_t *out)
{
    Fonte__Request req = FONTE__REQUEST__INIT;
    Fonte__StatusRequest sr = FONTE__STATUS_REQUEST__INIT;
    Fonte__Reply *rep = NULL;
    void *sock = NULL;
    fonte_err rc;

    if (c == NULL || out == NULL)
        return FONTE_EINVAL;
    memset(out, 0, sizeof *out);
    req.body_case = FONTE__REQUEST__BODY_STATUS;
    req.status = &sr;
    rc = ask(c, &sock, &req, false, &rep);
    client_query_give(c, sock);
    if (rc != FONTE_OK)
        return rc;
    if ((rc = status_err(rep->status)) == FONTE_OK) {
        const Fonte__StatusReply *s = rep->status_reply;
        if (rep->body_case != FONTE__REPLY__BODY_STATUS_REPLY || s == NULL) {
            rc = FONTE_EDECODE;
        } else {
            out->last_seq = s->last_seq;
            out->events = s->events;
            out->objects = s->objects;
            out->sessions = s->sessions;
            snprintf(out->data_dir, sizeof out->data_dir, "%s", s->data_dir);
            snprintf(out->version, sizeof out->version, "%s", s->version);
            snprintf(out->store_id, sizeof out->store_id, "%s", s->store_id);
        }
    }
    fonte__reply__free_unpacked(rep, NULL);
    return rc;
}

FONTE_EXPORT fonte_err
fonte_backup(fonte_client_t *c, const char *name, fonte_backup_info_t *out)
{
    Fonte__Request req = FONTE__REQUEST__INIT;
    Fonte__BackupRequest br = FONTE__BACKUP_REQUEST__INIT;
    Fonte__Reply *rep = NULL;
    void *sock = NULL;
    fonte_err rc;

    if (c == NULL || name == NULL || out == NULL)
        return FONTE_EINVAL;
    memset(out, 0, sizeof *out);
    if ((rc = codec_check_producer(name, strlen(name))) != FONTE_OK)
        return rc;
    br.name = (char *) name;
    req.body_case = FONTE__REQUEST__BODY_BACKUP;
    req.backup = &br;
    rc = ask(c, &sock, &req, true, &rep); /* never twice */
    client_query_give(c, sock);
    if (rc != FONTE_OK)
        return rc;
    const Fonte__BackupReply *b = rep->backup_reply;
    if ((rc = status_err(rep->status)) != FONTE_OK)
        snprintf(out->error, sizeof out->error, "%s", rep->error);
    else if (rep->body_case != FONTE__REPLY__BODY_BACKUP_REPLY || b == NULL)
        rc = FONTE_EDECODE;
    else {
        snprintf(out->path, sizeof out->path, "%s", b->path);
        out->keys = b->keys;
        out->bytes = b->bytes;
        out->last_seq = b->last_seq;
        out->duration_us = b->duration_us;
    }
    fonte__reply__free_unpacked(rep, NULL);
    return rc;
}
