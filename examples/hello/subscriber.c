/*
 * subscriber.c - the smallest fonte consumer: prints the greetings it
 * hears for a while; with an object name, first prints that object's
 * stored history (fonte_fetch: "ask for the data you do not have").
 *
 *     hello-subscriber [SECONDS] [OBJECT]      (default 10 s)
 *
 * Handlers run in this thread, inside fonte_dispatch: no locks needed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fonte/fonte.h>

static void
print_event(const fonte_event_t *e, void *arg)
{
    size_t len = 0;
    const char *text = fonte_event_payload(e, &len);
    long *count = arg;

    (*count)++;
    printf("%s %s %s%s \"%.*s\"\n", fonte_event_id(e), fonte_event_type(e),
           fonte_event_object(e),
           fonte_event_is_replay(e) ? " (replay)" : "", (int) len,
           text ? text : "");
}

int
main(int argc, char **argv)
{
    fonte_client_opts_t opts;
    fonte_client_t *client = NULL;
    fonte_err rc;
    long seconds = argc > 1 ? strtol(argv[1], NULL, 10) : 10, count = 0;

    fonte_client_opts_init(&opts);
    opts.service = "hello-subscriber";
    if ((rc = fonte_client_new(&opts, &client)) != FONTE_OK) {
        fprintf(stderr, "hello-subscriber: %s\n", fonte_strerror(rc));
        return 1;
    }
    if (argc > 2) {
        fonte_event_list_t *history = NULL;
        rc = fonte_fetch(client, argv[2], NULL, &history);
        if (rc == FONTE_OK) {
            for (size_t i = 0; i < fonte_event_list_count(history); i++)
                print_event(fonte_event_list_get(history, i), &count);
            fonte_event_list_destroy(&history);
        } else {
            fprintf(stderr, "hello-subscriber: fetch %s: %s\n", argv[2],
                    fonte_strerror(rc));
        }
    }
    fonte_subscribe(client, "greeting.", print_event, &count);
    for (long ms = 0; ms < seconds * 1000; ms += 100)
        fonte_dispatch(client, 100, NULL);
    printf("hello-subscriber: %ld events\n", count);
    fonte_client_destroy(&client);
    return 0;
}
