/*
 * broker.h - fonte's broker: an actor that routes events from publishers
 * to subscribers, validating each one on the way (design.md §2, §3, §7).
 *
 * The broker binds an XSUB ingress (publishers connect their PUB there)
 * and an XPUB egress (subscribers connect their SUB there). One thread of
 * its own moves messages from ingress to egress as zmq_msg_t, without
 * copying, in bursts of up to BROKER_BURST messages per wake-up, and
 * passes every (un)subscription from egress to ingress unchanged so that
 * publishers filter at the source. Each message is checked first:
 *
 *   full   (default) codec_check(): the frame count, the frame sizes and
 *          the whole Event (or Ack, Stats, ReplayAudit) by its topic's rule;
 *   frames two frames, sizes within limits, a known topic class.
 *
 * A message that fails is dropped whole (never a part of it), counted
 * under "invalid.<fonte_errname(rc)>" and logged at most once a second
 * per reason; valid traffic carries on untouched. A "$sys.broker"
 * message arriving on ingress is dropped as invalid.reserved: that topic
 * is the broker's own. Once per stats interval the broker publishes a
 * Stats message on "$sys.broker" straight into its egress.
 *
 * Limits: a frame over limits.max_msg never reaches the loop; libzmq
 * (ZMQ_MAXMSGSIZE) closes the publisher's connection instead, which
 * shows as counter "ingress_disconnects". The per-topic table holds at
 * most BROKER_TOPICS_MAX topics; events on topics beyond that are counted
 * under "topics_untracked". PUB/SUB is at-most-once: a subscriber that
 * stops reading loses messages once its queue reaches the HWM, and the
 * others are not slowed down.
 */
#ifndef FONTE_BROKER_H
#define FONTE_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "fonte/errors.h"

#define BROKER_INGRESS_DEFAULT "tcp://127.0.0.1:7701"
#define BROKER_EGRESS_DEFAULT "tcp://127.0.0.1:7702"
#define BROKER_HWM_DEFAULT 100000        /* messages per peer queue */
#define BROKER_STATS_INTERVAL_DEFAULT 1000000 /* microseconds */
#define BROKER_BURST 1000                /* messages per wake-up, per side */
#define BROKER_TOPICS_MAX 4096           /* distinct topics counted */
#define BROKER_STATS_TOPICS 20           /* topics in each Stats (top N) */
#define BROKER_ENDPOINT_MAX 256

typedef struct broker broker_t;

typedef struct broker_opts {
    const char *ingress;       /* XSUB bind endpoint */
    const char *egress;        /* XPUB bind endpoint */
    codec_limits_t limits;     /* limits.max_msg -> ZMQ_MAXMSGSIZE */
    int hwm;                   /* SNDHWM/RCVHWM of both sockets; 0 = none */
    bool validate_full;        /* true = full, false = frames */
    int64_t stats_interval_us; /* 0 = no Stats */
    /* CURVE (proto/curve.h), both or neither: the broker's certificate
     * (its secret file beside it) and the directory of the public
     * certificates of the clients admitted on both endpoints */
    const char *curve_cert;
    const char *curve_clients;
    /* With CURVE: the listener's public certificate. Then what only the
     * listener says - Acks, replays ($replay.*, and with validate_full
     * any event flagged as a replay), ReplayAudits, Stats on
     * $sys.listener - is forwarded only from a connection with that key,
     * and counted invalid (FONTE_ERESERVED) from any other: an admitted
     * service cannot ack another's events. NULL: from any admitted key
     * (logged at start). */
    const char *curve_listener;
} broker_opts_t;

/* Counters since start, as the loop last copied them: at least every
 * 10 ms while it is busy, within 100 ms when idle. The names in brackets
 * are the Stats keys. */
typedef struct broker_counters {
    uint64_t messages_in;  /* ["messages_in"] received on ingress, any */
    uint64_t bytes_in;     /* ["bytes_in"] their frames' bytes */
    uint64_t messages_out; /* ["messages_out"] forwarded to egress */
    uint64_t bytes_out;    /* ["bytes_out"] */
    uint64_t invalid;      /* ["invalid"] dropped, every reason */
    uint64_t invalid_by[FONTE_ERR_COUNT_]; /* ["invalid.<errname>"] */
    uint64_t subscribes;   /* ["subscribes"] passed upstream */
    uint64_t unsubscribes; /* ["unsubscribes"] passed upstream */
    uint64_t upstream_dropped; /* ["upstream_dropped"] messages from
                                  subscribers that are not one-frame
                                  (un)subscriptions: not passed on */
    uint64_t untracked;    /* ["topics_untracked"] events not in topics */
    uint64_t stats_sent;   /* ["stats_sent"] $sys.broker messages sent */
    uint64_t ingress_connects, ingress_disconnects; /* ["ingress_*"] */
    uint64_t egress_connects, egress_disconnects;   /* ["egress_*"] */
    uint64_t auth_allowed, auth_denied; /* ["auth_*"] CURVE clients
                                           admitted, refused (both ends) */
    int64_t publishers;    /* gauge: connections on ingress now */
    int64_t subscribers;   /* gauge: connections on egress now */
    int64_t subscriptions; /* gauge: distinct prefixes subscribed now */
    uint64_t copies;       /* times the loop has made this copy: a copy
                              with a higher count was made later, so one
                              read after another's is newer than all the
                              loop had done when the other was read */
} broker_counters_t;

/* Fills *o with the defaults above (full validation, default limits). */
void broker_opts_init(broker_opts_t *o);

/* Binds both endpoints (a "tcp://127.0.0.1:*" endpoint gets an ephemeral
 * port), starts the forwarding thread and returns; messages that arrive
 * before the thread first polls wait in the sockets' queues.
 * Returns FONTE_OK and sets *broker_p; FONTE_EINVAL for bad options or an
 * endpoint libzmq cannot parse, FONTE_EIO when a bind or a socket fails,
 * FONTE_ENOMEM. On error *broker_p is NULL and errbuf (if not NULL)
 * holds one line, e.g. "cannot bind ingress tcp://127.0.0.1:7701:
 * Address already in use". The broker owns its own ZeroMQ context.
 * The strings in *o are copied. */
fonte_err broker_new(const broker_opts_t *o, broker_t **broker_p,
                     char *errbuf, size_t errlen);

/* The endpoints as bound, e.g. "tcp://127.0.0.1:41234". Valid until
 * broker_destroy; thread-safe. */
const char *broker_ingress_endpoint(const broker_t *b);
const char *broker_egress_endpoint(const broker_t *b);

/* Copies the counters as of the loop's last copy (see above).
 * Thread-safe. */
void broker_counters(broker_t *b, broker_counters_t *out);

/* Stops the loop (within a second; pending messages are dropped, linger
 * 0), closes everything and frees the broker. NULL-safe; sets *broker_p
 * to NULL. Call from one thread only, not from the loop. */
void broker_destroy(broker_t **broker_p);

#endif
