/*
 * query.c - a client's questions to the listener's query endpoint:
 * fetch (ReplayRequest RETURN, paged), request_replay (REPUBLISH) and
 * status (StatusRequest).
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
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "client.h"
#include "event.h"

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

/* Sends req and waits for one Reply, with retries. On FONTE_OK the
 * caller owns *rep_p (free with fonte__reply__free_unpacked). *sock_p is
 * the REQ socket to reuse between pages (NULL: make one); the caller
 * closes it. */
static fonte_err
ask(fonte_client_t *c, void **sock_p, const Fonte__Request *req,
    Fonte__Reply **rep_p)
{
    codec_buf_t buf = { 0 };
    fonte_err rc;

    *rep_p = NULL;
    if ((rc = codec_pack(&req->base, &buf)) != FONTE_OK)
        return rc;
    rc = FONTE_ETIMEOUT;
    for (int try = 0; try < c->opts.query_retries; try++) {
        if (*sock_p == NULL &&
            (*sock_p = client_socket(c, ZMQ_REQ, c->query,
                                     c->opts.max_reply)) == NULL) {
            rc = FONTE_EIO;
            break;
        }
        if (zmq_send(*sock_p, buf.data, buf.len, 0) < 0) {
            rc = FONTE_EIO;
            break;
        }
        zmq_pollitem_t it = { *sock_p, 0, ZMQ_POLLIN, 0 };
        int n = zmq_poll(&it, 1, c->opts.query_timeout_ms);
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
            zmq_msg_close(&msg);
            break;
        }
        /* No reply (or poll failed): Lazy Pirate - drop the socket, the
         * request with it, and try again on a fresh one. */
        zmq_close(*sock_p);
        *sock_p = NULL;
        rc = n < 0 && errno != EINTR ? FONTE_EIO : FONTE_ETIMEOUT;
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
    return rc;
}

FONTE_EXPORT fonte_err
fonte_fetch(fonte_client_t *c, const char *object,
            const fonte_fetch_opts_t *opts, fonte_event_list_t **list_p)
{
    Fonte__Request req = FONTE__REQUEST__INIT;
    Fonte__ReplayRequest rr = FONTE__REPLAY_REQUEST__INIT;
    fonte_fetch_opts_t dflt;
    fonte_event_list_t *l = NULL;
    Fonte__Reply *rep = NULL;
    uint8_t *cursor = NULL;
    void *sock = NULL;
    fonte_err rc;

    if (list_p == NULL || c == NULL)
        return FONTE_EINVAL;
    *list_p = NULL;
    if (opts == NULL) {
        fonte_fetch_opts_init(&dflt);
        opts = &dflt;
    }
    if ((rc = check_select(c, object, opts)) != FONTE_OK)
        return rc;
    if ((l = event_list_new()) == NULL)
        return FONTE_ENOMEM;
    fill_select(&rr, object, opts);
    rr.mode = FONTE__REPLAY_REQUEST__MODE__RETURN;
    req.body_case = FONTE__REQUEST__BODY_REPLAY;
    req.replay = &rr;

    for (;;) {
        if ((rc = ask(c, &sock, &req, &rep)) != FONTE_OK)
            goto fail;
        if ((rc = status_err(rep->status)) != FONTE_OK)
            goto fail;
        rc = FONTE_EDECODE;
        if (rep->body_case != FONTE__REPLY__BODY_REPLAY || rep->replay == NULL)
            goto fail;
        Fonte__ReplayReply *page = rep->replay;
        size_t got = page->n_events;
        if ((rc = take_page(l, page)) != FONTE_OK)
            goto fail;
        if (page->cursor.len == 0)
            break;
        /* A page without events that does not move the cursor would
         * loop forever: a listener bug, refused. */
        if (got == 0 && cursor != NULL && rr.cursor.len == page->cursor.len &&
            memcmp(cursor, page->cursor.data, page->cursor.len) == 0) {
            rc = FONTE_EDECODE;
            goto fail;
        }
        free(cursor);
        if ((cursor = malloc(page->cursor.len)) == NULL) {
            rc = FONTE_ENOMEM;
            goto fail;
        }
        memcpy(cursor, page->cursor.data, page->cursor.len);
        rr.cursor.data = cursor;
        rr.cursor.len = page->cursor.len;
        fonte__reply__free_unpacked(rep, NULL);
        rep = NULL;
    }
    fonte__reply__free_unpacked(rep, NULL);
    free(cursor);
    if (sock != NULL)
        zmq_close(sock);
    *list_p = l;
    return FONTE_OK;

fail:
    if (rep != NULL)
        fonte__reply__free_unpacked(rep, NULL);
    free(cursor);
    if (sock != NULL)
        zmq_close(sock);
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

    rc = ask(c, &sock, &req, &rep);
    if (sock != NULL)
        zmq_close(sock);
    if (rc != FONTE_OK)
        return rc;
    if ((rc = status_err(rep->status)) == FONTE_OK && ticket != NULL) {
        if (rep->body_case == FONTE__REPLY__BODY_REPLAY && rep->replay) {
            snprintf(ticket->replay_id, sizeof ticket->replay_id, "%s",
                     rep->replay->replay_id);
            ticket->total = rep->replay->total;
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
    rc = ask(c, &sock, &req, &rep);
    if (sock != NULL)
        zmq_close(sock);
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
        }
    }
    fonte__reply__free_unpacked(rep, NULL);
    return rc;
}
