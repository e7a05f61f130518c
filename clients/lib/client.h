/*
 * client.h - the inside of a fonte_client, shared by the files of
 * libfonte that implement its parts: client.c (lifecycle, publish, flush,
 * subscribe, dispatch), io.c (the I/O thread), query.c (fetch, replay,
 * status). Not installed.
 */
#ifndef FONTE_CLIENT_H
#define FONTE_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "curve.h"
#include "fonte/fonte.h"
#include "inbox.h"
#include "outbox.h"

typedef struct client_sub {
    char *prefix;
    fonte_handler_fn handler;
    void *arg;
} client_sub_t;

/* Idle query sockets kept per client: enough for a few threads asking at
 * once; more are opened as needed and closed after their query. */
#define CLIENT_QPOOL_MAX 4

struct fonte_client {
    fonte_client_opts_t opts; /* its strings point at the copies below */
    char *service, *ingress, *egress, *query;
    size_t service_len;
    codec_limits_t lim;
    uint64_t session;
    char ack_topic[sizeof CODEC_TOPIC_ACK + CODEC_PRODUCER_MAX];
    char replay_prefix[sizeof CODEC_TOPIC_REPLAY + CODEC_PRODUCER_MAX + 1];

    void *zctx;
    bool curve; /* CURVE client: its pair, the broker's and listener's */
    fcurve_cert_t cert, broker_cert, listener_cert;
    void *pub, *ctrl, *user; /* owned by the I/O thread once started */
    int wake_fd;             /* eventfd: wakes the I/O thread */
    pthread_t io;
    bool io_started;
    atomic_bool stop;

    outbox_t *outbox;
    inbox_t *inbox;
    pthread_mutex_t pub_mu; /* serialises publishers: one seq order */

    pthread_mutex_t subs_mu;
    client_sub_t *subs;
    size_t n_subs, cap_subs;
    size_t subs_applied;    /* I/O thread: subs already on the socket */
    client_sub_t *scratch;  /* dispatch: matching handlers */
    size_t cap_scratch;

    atomic_uint_fast64_t published, sent, resent, gap_acks,
        resend_timeouts, invalid;

    /* Idle query sockets (REQ, connected to the listener), kept for the
     * next query of any thread: a new socket costs a TCP connect and a
     * ZMTP handshake before the request can go. A socket passes between
     * threads only through qpool_mu (ZeroMQ allows that with a full
     * memory barrier); only sockets whose last request was answered come
     * back (a REQ that timed out is closed: Lazy Pirate). */
    pthread_mutex_t qpool_mu;
    void *qpool[CLIENT_QPOOL_MAX];
    size_t n_qpool;
    atomic_uint_fast64_t query_connects;
};

/* The I/O thread's body (io.c); arg is the client. */
void *client_io_main(void *arg);

/* Wakes the I/O thread (a write to the eventfd; any thread). */
void client_wake(fonte_client_t *c);

/* A query socket: an idle one from the pool, else a new REQ connected
 * to the listener (counted in query_connects). NULL on failure. */
void *client_query_take(fonte_client_t *c);

/* Gives back a query socket whose last request was answered: kept for
 * the next query, or closed when the pool is full. NULL-safe. */
void client_query_give(fonte_client_t *c, void *sock);

/* Creates a socket of type with LINGER 0 and MAXMSGSIZE max_msg (and
 * CURVE, with the listener's key for a REQ, else the broker's), then
 * connects it to endpoint. NULL on failure (errno from libzmq). */
void *client_socket(fonte_client_t *c, int type, const char *endpoint,
                    size_t max_msg);

#endif
