/*
 * publish.c - `fonte publish`: publishes events through libfonte and
 * exits 0 only once every one is durable in the listener's store
 * (fonte_flush), 1 if that did not happen within --timeout.
 *
 * One event from flags (--type, --object, --dep..., --payload or
 * --payload-file, --meta k=v..., --count N copies), or with --jsonl one
 * event per line of stdin. --jsonl reads and checks the WHOLE input
 * first, as fonte_publish will (the broker's rules, codec_event_validate,
 * and the size of the encoded event), and publishes nothing if any line
 * is bad: a script never has to guess which half of its file went in.
 * The cost is that the input is held in memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"

static const char usage[] =
    "usage: fonte publish --type T --object O [--dep D]... [--payload TEXT | "
    "--payload-file F] [--payload-type NAME] [--meta k=v]... [--count N]\n"
    "       fonte publish --jsonl < events.jsonl\n"
    "\n"
    "Publishes events as producer --producer and waits until the listener\n"
    "has stored every one (exit 0), at most --timeout (else exit 1).\n"
    "--jsonl reads one JSON object per line from stdin: type, object,\n"
    "deps (array), payload (text) or payload_b64, payload_type, meta\n"
    "(object of strings); a bad line is reported and nothing is published.\n";

/* What fonte_publish would say of the event it builds from s as the
 * producer_seq seq of producer's session: the broker's rules and then
 * the size of the encoding against the client's max_msg (cli_client
 * leaves it at codec_limits_default's), checked the way libfonte does,
 * by encoding it. The stand-ins encode to the real event's size: any
 * session is 8 bytes (fixed64) and 16 hex digits in the id, and time_us
 * is now. So a check that passes leaves fonte_publish only runtime
 * errors (a full outbox, no memory). */
static fonte_err
check_spec(const fonte_event_spec_t *s, const char *producer, uint64_t seq)
{
    Fonte__Event ev = FONTE__EVENT__INIT;
    Fonte__Event__MetaEntry *ents = NULL, **ptrs = NULL;
    codec_buf_t topic, body;
    char id[CODEC_ID_MAX];
    fonte_err rc = FONTE_ENOMEM;

    if (s->n_meta > CODEC_META_MAX)
        return FONTE_EMETA; /* before anything, as libfonte */
    if (s->n_meta > 0) {
        ents = calloc(s->n_meta, sizeof *ents);
        ptrs = calloc(s->n_meta, sizeof *ptrs);
        if (ents == NULL || ptrs == NULL)
            goto out;
        for (size_t i = 0; i < s->n_meta; i++) {
            fonte__event__meta_entry__init(&ents[i]);
            ents[i].key = (char *) s->meta[i].key;
            ents[i].value = (char *) s->meta[i].value;
            ptrs[i] = &ents[i];
        }
    }
    codec_format_id(id, producer, strlen(producer), 1, seq);
    ev.id = id;
    ev.type = (char *) s->type;
    ev.object = (char *) s->object;
    ev.depends_on = (char **) s->depends_on;
    ev.n_depends_on = s->n_depends_on;
    ev.producer = (char *) producer;
    ev.session = 1;
    ev.producer_seq = seq;
    ev.time_us = fonte_wall_us();
    ev.payload_type = (char *) (s->payload_type ? s->payload_type : "");
    ev.payload.data = (uint8_t *) s->payload;
    ev.payload.len = s->payload_len;
    ev.meta = ptrs;
    ev.n_meta = s->n_meta;
    rc = codec_event_encode(&ev, &codec_limits_default, &topic, &body);
    codec_buf_free(&topic);
    codec_buf_free(&body);
out:
    free(ents);
    free(ptrs);
    return rc;
}

/* What a check_spec error is, in words: the size limit named. */
static const char *
problem(fonte_err err, char *buf, size_t cap)
{
    if (err != FONTE_ETOOBIG)
        return fonte_strerror(err);
    snprintf(buf, cap, "%s of %zu bytes", fonte_strerror(err),
             codec_limits_default.max_msg);
    return buf;
}

static bool
read_file(const char *path, size_t max, uint8_t **out, size_t *n)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);

    if (f == NULL || buf == NULL) {
        if (f)
            fclose(f);
        free(buf);
        return false;
    }
    bool oom = false;
    /* until EOF, or past max (then the size check refuses it): a file
     * like /dev/zero is not read until memory runs out */
    while (len <= max) {
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if ((oom = nb == NULL))
                break;
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    bool ok = !ferror(f) && !oom;
    if (oom)
        errno = ENOMEM;
    fclose(f);
    if (!ok) {
        free(buf);
        return false;
    }
    *out = buf;
    *n = len;
    return true;
}

/* Reads every line of stdin into items (and the JSON they point into). */
static int
read_jsonl(const char *cmd, const char *producer, cli_spec_t **items_p,
           json_t **docs_p, size_t *n_p)
{
    json_t *docs = json_array();
    cli_spec_t *items = NULL;
    size_t n = 0, cap = 0, lineno = 0, len = 0;
    char *line = NULL, why[512];
    int rc = CLI_EXIT_OK;
    ssize_t got;

    while ((got = getline(&line, &len, stdin)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t) got)
            continue; /* blank */
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t) got, JSON_REJECT_DUPLICATES,
                               &jerr);
        if (j == NULL) {
            cli_error(cmd, "stdin line %zu: not JSON (%s); nothing was "
                      "published", lineno, jerr.text);
            rc = CLI_EXIT_USAGE;
            break;
        }
        json_array_append_new(docs, j);
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            cli_spec_t *ni = realloc(items, cap * sizeof *ni);
            if (ni == NULL) {
                cli_error(cmd, "out of memory reading stdin");
                rc = CLI_EXIT_REFUSED;
                break;
            }
            items = ni;
        }
        if (!cli_spec_from_json(&items[n], j, why, sizeof why)) {
            cli_spec_fini(&items[n]);
            cli_error(cmd, "stdin line %zu: %s; nothing was published",
                      lineno, why);
            rc = CLI_EXIT_USAGE;
            break;
        }
        fonte_err err = check_spec(&items[n].spec, producer, n + 1);
        n++;
        if (err != FONTE_OK) {
            cli_error(cmd, "stdin line %zu: %s (type \"%s\", object \"%s\"); "
                      "nothing was published", lineno,
                      problem(err, why, sizeof why), items[n - 1].spec.type,
                      items[n - 1].spec.object);
            rc = CLI_EXIT_USAGE;
            break;
        }
    }
    free(line);
    if (rc == CLI_EXIT_OK && ferror(stdin)) {
        cli_error(cmd, "cannot read stdin: %s", strerror(errno));
        rc = CLI_EXIT_REFUSED;
    }
    if (rc == CLI_EXIT_OK && n == 0) {
        cli_error(cmd, "no events on stdin (one JSON object per line)");
        rc = CLI_EXIT_USAGE;
    }
    *items_p = items;
    *docs_p = docs;
    *n_p = n;
    return rc;
}

/* Builds the one event of the flags into *it. */
static int
item_from_flags(const char *cmd, cli_spec_t *it, const char *type,
                const char *object, cli_multi_t *deps, cli_multi_t *meta,
                const char *payload, const char *payload_file,
                const char *payload_type)
{
    memset(it, 0, sizeof *it);
    if (type == NULL || object == NULL) {
        cli_error(cmd, "--type and --object are required (or --jsonl to read "
                  "JSON lines from stdin; try --help)");
        return CLI_EXIT_USAGE;
    }
    if (payload != NULL && payload_file != NULL) {
        cli_error(cmd, "give --payload or --payload-file, not both");
        return CLI_EXIT_USAGE;
    }
    it->spec.type = type;
    it->spec.object = object;
    it->spec.payload_type = payload_type;
    it->spec.depends_on = deps->vals;
    it->spec.n_depends_on = deps->n;
    if (meta->n > 0) {
        if ((it->meta = calloc(meta->n, sizeof *it->meta)) == NULL) {
            cli_error(cmd, "out of memory");
            return CLI_EXIT_REFUSED;
        }
        for (size_t i = 0; i < meta->n; i++) {
            const char *eq = strchr(meta->vals[i], '=');
            if (eq == NULL) {
                cli_error(cmd, "--meta '%s' is not key=value", meta->vals[i]);
                return CLI_EXIT_USAGE;
            }
            /* The key is cut out of argv's own string (ours to edit). */
            ((char *) meta->vals[i])[eq - meta->vals[i]] = '\0';
            it->meta[i].key = meta->vals[i];
            it->meta[i].value = eq + 1;
            for (size_t k = 0; k < i; k++) {
                if (strcmp(it->meta[k].key, it->meta[i].key) == 0) {
                    cli_error(cmd, "--meta %s is given twice; a key may "
                              "appear once", it->meta[i].key);
                    return CLI_EXIT_USAGE;
                }
            }
        }
        it->spec.meta = it->meta;
        it->spec.n_meta = meta->n;
    }
    if (payload != NULL) {
        it->spec.payload = payload;
        it->spec.payload_len = strlen(payload);
    } else if (payload_file != NULL) {
        size_t n = 0;
        if (!read_file(payload_file, codec_limits_default.max_msg,
                       &it->payload, &n)) {
            cli_error(cmd, "cannot read --payload-file %s: %s", payload_file,
                      strerror(errno ? errno : EIO));
            return CLI_EXIT_USAGE;
        }
        it->spec.payload = it->payload;
        it->spec.payload_len = n;
    }
    return CLI_EXIT_OK;
}

int
cmd_publish(int argc, char **argv)
{
    cli_endpoints_t ep;
    const char *type = NULL, *object = NULL, *payload = NULL,
               *payload_file = NULL, *payload_type = NULL, *producer = "cli",
               *dummy = NULL;
    uint64_t count = 1;
    bool jsonl = false;
    int64_t timeout_us = 10000000;
    cli_multi_t multi[] = { { "dep", NULL, 0, 0 }, { "meta", NULL, 0, 0 },
                            { NULL, NULL, 0, 0 } };
    cli_spec_t *items = NULL, one;
    json_t *docs = NULL;
    size_t n = 0;
    fonte_client_t *c = NULL;
    const char *cmd = argv[0];

    cli_endpoints_init(&ep);
    memset(&one, 0, sizeof one);
    const flag_spec_t specs[] = {
        CLI_ENDPOINT_FLAGS(ep),
        CLI_CURVE_FLAGS(ep),
        { "type", NULL, FLAG_STR, &type, "event type, e.g. order.placed",
          NULL },
        { "object", NULL, FLAG_STR, &object, "the object, e.g. order:42",
          NULL },
        { "dep", NULL, FLAG_STR, &dummy,
          "an object it depends on (repeatable)", NULL },
        { "payload", NULL, FLAG_STR, &payload, "payload text", NULL },
        { "payload-file", NULL, FLAG_STR, &payload_file,
          "payload bytes from a file", NULL },
        { "payload-type", NULL, FLAG_STR, &payload_type,
          "payload type name, e.g. shop.OrderPlaced", NULL },
        { "meta", NULL, FLAG_STR, &dummy, "key=value (repeatable)", NULL },
        { "count", NULL, FLAG_UINT, &count, "publish the event N times (1)",
          NULL },
        { "jsonl", NULL, FLAG_BOOL, &jsonl,
          "read one JSON event per line from stdin", NULL },
        { "producer", "FONTE_PRODUCER", FLAG_STR, &producer,
          "producer name, [a-z0-9_-]{1,64} (cli)", NULL },
        { "timeout", NULL, FLAG_DURATION, &timeout_us,
          "wait this long for room in a full outbox, then for every event "
          "to be durable (10s)", NULL },
        CLI_FLAGS_END,
    };
    int rc = cli_flags(specs, multi, argc, argv, usage, 0, 0, NULL, NULL);
    if (rc != CLI_CONTINUE)
        goto out;
    rc = CLI_EXIT_USAGE;
    if (count == 0 || count > 100000000) {
        cli_error(cmd, "--count must be 1..100000000");
        goto out;
    }
    if (timeout_us <= 0) {
        cli_error(cmd, "--timeout must be more than 0");
        goto out;
    }
    if (codec_check_producer(producer, strlen(producer)) != FONTE_OK) {
        cli_error(cmd, "invalid producer name '%s': use 1..64 of [a-z0-9_-] "
                  "(--producer)", producer);
        goto out;
    }
    if (jsonl) {
        if (type || object || payload || payload_file || payload_type ||
            multi[0].n || multi[1].n || count != 1) {
            cli_error(cmd, "--jsonl reads the events from stdin; do not give "
                      "--type, --object, --dep, --payload*, --meta or "
                      "--count with it");
            goto out;
        }
        if ((rc = read_jsonl(cmd, producer, &items, &docs, &n)) !=
            CLI_EXIT_OK)
            goto out;
    } else {
        if ((rc = item_from_flags(cmd, &one, type, object, &multi[0],
                                  &multi[1], payload, payload_file,
                                  payload_type)) != CLI_EXIT_OK)
            goto out;
        char why[128];
        fonte_err err = check_spec(&one.spec, producer, count);
        if (err != FONTE_OK) {
            cli_error(cmd, "%s (type \"%s\", object \"%s\"); see "
                      "docs/protocol.md §3 for the rules",
                      problem(err, why, sizeof why), type, object);
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        items = &one;
        n = 1;
    }

    if ((rc = cli_client(cmd, &ep, producer, timeout_us, &c)) != CLI_EXIT_OK)
        goto out;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        for (uint64_t k = 0; k < count; k++) {
            fonte_err err = fonte_publish(c, &items[i].spec);
            if (err == FONTE_EFULL) {
                char d[32];
                cli_format_duration(timeout_us, d, sizeof d);
                cli_error(cmd, "the outbox stayed full for %s: the listener "
                          "is not acknowledging (%llu event%s published); is "
                          "`fonte up` running? (--ingress, --egress, "
                          "--timeout)", d, (unsigned long long) total,
                          cli_plural(total));
                rc = CLI_EXIT_REFUSED;
                goto out;
            }
            if (err != FONTE_OK) {
                cli_error(cmd, "cannot publish: %s", fonte_strerror(err));
                rc = err == FONTE_ENOMEM || err == FONTE_EIO
                         ? CLI_EXIT_REFUSED : CLI_EXIT_USAGE;
                goto out;
            }
            total++;
        }
    }
    int64_t ms = timeout_us / 1000;
    fonte_err err = fonte_flush(c, ms > 1 ? (ms > 86400000 ? 86400000
                                                           : (int) ms) : 1);
    if (err != FONTE_OK) {
        fonte_client_stats_t st;
        fonte_client_stats(c, &st);
        char d[32];
        snprintf(d, sizeof d, "%.3g s", (double) timeout_us / 1e6);
        cli_error(cmd, "%llu of %llu event%s not acknowledged as durable "
                  "within %s; is a listener behind the broker at %s? "
                  "(--ingress, --egress, --timeout)",
                  (unsigned long long) st.outbox_events,
                  (unsigned long long) total, cli_plural(total), d,
                  ep.ingress);
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    printf("published %llu event%s as %s/%016llx, all durable\n",
           (unsigned long long) total, total == 1 ? "" : "s", producer,
           (unsigned long long) fonte_client_session(c));
    rc = CLI_EXIT_OK;
out:
    fonte_client_destroy(&c);
    if (items == &one)
        items = NULL;
    cli_spec_fini(&one);
    for (size_t i = 0; i < n && items != NULL; i++)
        cli_spec_fini(&items[i]);
    free(items);
    json_decref(docs);
    free(multi[0].vals);
    free(multi[1].vals);
    return rc;
}
