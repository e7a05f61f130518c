/*
 * producer_child.c - a producer for test_reliability to SIGKILL: a
 * process of its own, so that its death is a real one (its outbox, its
 * sockets and its ZeroMQ threads gone at once, mid-publish).
 *
 *   test_producer INGRESS EGRESS QUERY SERVICE FLUSH_EVERY [MAX]
 *
 * Prints "session <16 hex>" first, then publishes events of type
 * order.placed on objects order:0 .. order:99 and, after every
 * FLUSH_EVERY of them, calls fonte_flush and prints "flushed <n>" once it
 * returns FONTE_OK: n events are durable, which is what the test holds
 * the store to after the kill. Each line is flushed to stdout before the
 * next event is published. Runs until killed, or until MAX events are
 * published and flushed (exit 0); exit 1 with "error <text>" on a failure.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "fonte/fonte.h"

static int
fail(const char *what, fonte_err rc)
{
    printf("error %s: %s\n", what, fonte_strerror(rc));
    fflush(stdout);
    return 1;
}

int
main(int argc, char **argv)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    fonte_event_spec_t s = { 0 };
    char object[32];
    fonte_err rc;

    if (argc < 6 || atoi(argv[5]) <= 0) {
        fprintf(stderr, "usage: test_producer INGRESS EGRESS QUERY SERVICE "
                        "FLUSH_EVERY [MAX]\n");
        return 2;
    }
    unsigned long long every = strtoull(argv[5], NULL, 10);
    unsigned long long max = argc > 6 ? strtoull(argv[6], NULL, 10) : 0;

    fonte_client_opts_init(&o);
    o.ingress = argv[1];
    o.egress = argv[2];
    o.query = argv[3];
    o.service = argv[4];
    o.resend_timeout_ms = 300;
    o.publish_timeout_ms = 60000;
    if ((rc = fonte_client_new(&o, &c)) != FONTE_OK)
        return fail("client", rc);
    printf("session %016" PRIx64 "\n", fonte_client_session(c));
    fflush(stdout);

    s.type = "order.placed";
    s.object = object;
    for (unsigned long long n = 1; max == 0 || n <= max; n++) {
        snprintf(object, sizeof object, "order:%llu", n % 100);
        if ((rc = fonte_publish(c, &s)) != FONTE_OK)
            return fail("publish", rc);
        if (n % every == 0) {
            if ((rc = fonte_flush(c, 60000)) != FONTE_OK)
                return fail("flush", rc);
            printf("flushed %llu\n", n);
            fflush(stdout);
        }
    }
    fonte_client_destroy(&c);
    return 0;
}
