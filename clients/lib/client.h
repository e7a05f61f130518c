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
#include "fonte/fonte.h"
#include "inbox.h"
#include "outbox.h"

typedef struct client_sub {
    char *prefix;
    fonte_handler_fn handler;
    void *arg;
} client_sub_t;

struct fonte_client {
    fonte_client_opts_t opts; /* its strings point at the copies below */
    char *service, *ingress, *egress, *query;
    size_t service_len;
    codec_limits_t lim;
    uint64_t session;
    char ack_topic[sizeof CODEC_TOPIC_ACK + CODEC_PRODUCER_MAX];
    char replay_prefix[sizeof CODEC_TOPIC_REPLAY + CODEC_PRODUCER_MAX + 1];

    void *zctx;
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
        resend_timeouts, received, invalid;
};

/* The I/O thread's body (io.c); arg is the client. */
void *client_io_main(void *arg);

/* Wakes the I/O thread (a write to the eventfd; any thread). */
void client_wake(fonte_client_t *c);

/* Creates a socket of type with LINGER 0 and MAXMSGSIZE max_msg, then
 * connects it to endpoint. NULL on failure (errno from libzmq). */
void *client_socket(fonte_client_t *c, int type, const char *endpoint,
                    size_t max_msg);

#endif
