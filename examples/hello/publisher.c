/*
 * publisher.c - the smallest fonte producer: publishes N greetings and
 * waits until the listener has stored them all.
 *
 *     hello-publisher [N]          (default 10)
 *
 * Endpoints come from FONTE_INGRESS, FONTE_EGRESS and FONTE_QUERY (else
 * the defaults of a local `fonte up`). Exit 0 once everything is durable,
 * 1 if the listener did not confirm within 10 s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fonte/fonte.h>

int
main(int argc, char **argv)
{
    fonte_client_opts_t opts;
    fonte_client_t *client = NULL;
    fonte_err rc;
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10;

    fonte_client_opts_init(&opts);
    opts.service = "hello-publisher";
    if ((rc = fonte_client_new(&opts, &client)) != FONTE_OK) {
        fprintf(stderr, "hello-publisher: %s\n", fonte_strerror(rc));
        return 1;
    }
    for (long i = 0; i < n; i++) {
        char object[32], text[64];
        snprintf(object, sizeof object, "greeting:%ld", i);
        snprintf(text, sizeof text, "hello, world #%ld", i);
        const char *deps[] = { "world:1" };
        fonte_meta_t meta[] = { { "correlation_id", "hello-run" } };
        fonte_event_spec_t ev = {
            .type = "greeting.sent",
            .object = object,
            .depends_on = deps,
            .n_depends_on = 1,
            .payload = text,
            .payload_len = strlen(text),
            .payload_type = "text/plain",
            .meta = meta,
            .n_meta = 1,
        };
        if ((rc = fonte_publish(client, &ev)) != FONTE_OK) {
            fprintf(stderr, "hello-publisher: publish: %s\n",
                    fonte_strerror(rc));
            break;
        }
    }
    /* The commit point: until flush returns FONTE_OK, a crash of this
     * process could lose what it published. */
    if (rc == FONTE_OK && (rc = fonte_flush(client, 10000)) == FONTE_OK)
        printf("hello-publisher: %ld events durable (session %016llx)\n", n,
               (unsigned long long) fonte_client_session(client));
    else if (rc == FONTE_ETIMEOUT)
        fprintf(stderr, "hello-publisher: not confirmed in 10 s (is the "
                        "listener running?)\n");
    fonte_client_destroy(&client);
    return rc == FONTE_OK ? 0 : 1;
}
