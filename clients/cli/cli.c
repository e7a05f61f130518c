/*
 * cli.c - the helpers every fonte subcommand shares (see cli.h): flag
 * parsing on top of proto/flags.h, one-line errors, clients and SUB
 * sockets, and the JSON and one-line forms of what is on the bus.
 *
 * flags_parse() stops at the first positional and keeps the last value of
 * a repeated flag; users write `fonte replay order:42 --json` and
 * `--dep a --dep b`, so cli_flags() first moves the positionals behind a
 * "--" and takes the repeatable flags out, then hands the rest over.
 */
#include "cli.h"
#include "zmqx.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

void
cli_endpoints_init(cli_endpoints_t *ep)
{
    ep->ingress = FONTE_INGRESS_DEFAULT;
    ep->egress = FONTE_EGRESS_DEFAULT;
    ep->query = FONTE_QUERY_DEFAULT;
    ep->curve_cert = ep->curve_broker = ep->curve_listener = NULL;
}

int
cli_curve(const char *cmd, const cli_endpoints_t *ep, bool *curve,
          fcurve_cert_t *cert, fcurve_cert_t *broker)
{
    char err[1024];
    fcurve_cert_t listener;

    *curve = false;
    if (ep->curve_cert == NULL && ep->curve_broker == NULL &&
        ep->curve_listener == NULL)
        return CLI_EXIT_OK;
    if (ep->curve_cert == NULL || ep->curve_broker == NULL) {
        if (cmd != NULL)
            cli_error(cmd, "CURVE needs both --curve-cert (this client's "
                      "certificate) and --curve-broker (the broker's "
                      "public one)");
        return CLI_EXIT_USAGE;
    }
    if (fcurve_cert_load(ep->curve_cert, true, cert, err, sizeof err) ||
        fcurve_cert_load(ep->curve_broker, false, broker, err, sizeof err) ||
        (ep->curve_listener != NULL &&
         fcurve_cert_load(ep->curve_listener, false, &listener, err,
                          sizeof err))) {
        if (cmd != NULL)
            cli_error(cmd, "%s", err);
        return CLI_EXIT_USAGE;
    }
    *curve = true;
    return CLI_EXIT_OK;
}

static const flag_spec_t *
find_spec(const flag_spec_t *specs, const char *name, size_t nlen)
{
    for (const flag_spec_t *f = specs; f->name; f++)
        if (strlen(f->name) == nlen && strncmp(f->name, name, nlen) == 0)
            return f;
    return NULL;
}

static cli_multi_t *
find_multi(cli_multi_t *multi, const char *name, size_t nlen)
{
    for (cli_multi_t *m = multi; m && m->name; m++)
        if (strlen(m->name) == nlen && strncmp(m->name, name, nlen) == 0)
            return m;
    return NULL;
}

static bool
multi_add(cli_multi_t *m, const char *v)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        const char **vals = realloc(m->vals, cap * sizeof *vals);
        if (vals == NULL)
            return false;
        m->vals = vals;
        m->cap = cap;
    }
    m->vals[m->n++] = v;
    return true;
}

int
cli_flags(const flag_spec_t *specs, cli_multi_t *multi, int argc,
          char **argv, const char *usage, int min_pos, int max_pos,
          const char **pos, int *n_pos)
{
    char prog[64];
    char **av = calloc((size_t) argc + 2, sizeof *av);
    const char **ps = calloc((size_t) argc + 1, sizeof *ps);
    int na = 0, np = 0, rc = CLI_CONTINUE;

    snprintf(prog, sizeof prog, "fonte %s", argv[0]);
    if (av == NULL || ps == NULL) {
        cli_error(argv[0], "out of memory");
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    av[na++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            while (++i < argc)
                ps[np++] = argv[i];
            break;
        }
        if (strcmp(a, "-h") == 0) {
            av[na++] = argv[i]; /* --help, for flags_parse */
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            ps[np++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t) (eq - name) : strlen(name);
        cli_multi_t *m = find_multi(multi, name, nlen);
        if (m != NULL) {
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (v == NULL) {
                cli_error(argv[0], "flag --%s needs a value (try --help)",
                          m->name);
                rc = CLI_EXIT_USAGE;
                goto out;
            }
            if (!multi_add(m, v)) {
                cli_error(argv[0], "out of memory");
                rc = CLI_EXIT_REFUSED;
                goto out;
            }
            continue;
        }
        av[na++] = argv[i];
        const flag_spec_t *f = find_spec(specs, name, nlen);
        if (f != NULL && f->kind != FLAG_BOOL && eq == NULL) {
            /* its value, even if it looks positional; none at the end
             * is an error here, before the "--" put after the flags
             * below could be taken for it */
            if (i + 1 >= argc) {
                cli_error(argv[0], "flag --%s needs a value (try --help)",
                          f->name);
                rc = CLI_EXIT_USAGE;
                goto out;
            }
            av[na++] = argv[++i];
        }
    }
    if (np > 0)
        av[na++] = "--";
    int first = 0;
    switch (flags_parse(specs, na, av, prog, usage, &first, stdout,
                        stderr)) {
    case FLAGS_OK:
        break;
    case FLAGS_HELP:
    case FLAGS_VERSION:
        rc = CLI_EXIT_OK;
        goto out;
    case FLAGS_ERROR:
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (np < min_pos) {
        cli_error(argv[0], "missing argument (usage: %.*s; try --help)",
                  (int) strcspn(usage + 7, "\n"), usage + 7);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (np > max_pos) {
        cli_error(argv[0], "unexpected argument '%s' (try --help)",
                  ps[max_pos]);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    for (int i = 0; i < np; i++)
        pos[i] = ps[i];
    if (n_pos != NULL)
        *n_pos = np;
out:
    free(av);
    free(ps);
    return rc;
}

void
cli_error(const char *cmd, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    int n = snprintf(line, sizeof line, "fonte %s: ", cmd);

    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t) n - 1, fmt, ap);
    va_end(ap);
    /* One line, whatever the message held. */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "%s\n", line);
}

int
cli_check_endpoints(const char *cmd, const cli_endpoints_t *ep,
                    unsigned which)
{
    const struct {
        unsigned bit;
        const char *name, *var, *endpoint;
    } eps[] = {
        { CLI_EP_INGRESS, "ingress", "FONTE_INGRESS", ep->ingress },
        { CLI_EP_EGRESS, "egress", "FONTE_EGRESS", ep->egress },
        { CLI_EP_QUERY, "query", "FONTE_QUERY", ep->query },
    };
    bool bind = (which & CLI_EP_BIND) != 0;
    void *ctx = NULL, *s = NULL;
    int rc = CLI_EXIT_OK, linger = 0;

    if ((which & CLI_EP_CONNECT) && (ctx = zmq_ctx_new()) != NULL &&
        (s = zmq_socket(ctx, ZMQ_DEALER)) != NULL)
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    for (size_t i = 0; i < sizeof eps / sizeof *eps; i++) {
        if (!(which & eps[i].bit))
            continue;
        if (flags_tcp_port_ok(eps[i].endpoint, bind) &&
            (s == NULL || zmqx_connect(s, eps[i].endpoint) == 0))
            continue;
        cli_error(cmd, "the %s endpoint '%s' is not one fonte can %s; write "
                  "it like tcp://HOST:PORT with a port of 1..65535%s (--%s, "
                  "%s)", eps[i].name, eps[i].endpoint,
                  bind ? "bind" : "connect to", bind ? " or *" : "",
                  eps[i].name, eps[i].var);
        rc = CLI_EXIT_USAGE;
        break;
    }
    if (s != NULL)
        zmq_close(s);
    if (ctx != NULL)
        zmqx_ctx_term(ctx);
    return rc;
}

int
cli_client(const char *cmd, const cli_endpoints_t *ep, const char *service,
           int64_t timeout_us, fonte_client_t **c)
{
    fonte_client_opts_t o;
    fonte_err rc;
    int ok;

    *c = NULL;
    fcurve_cert_t cert, broker;
    bool curve;
    ok = cli_curve(cmd, ep, &curve, &cert, &broker);
    explicit_bzero(&cert, sizeof cert); /* libfonte reads them again */
    if (ok != CLI_EXIT_OK)
        return ok;
    if ((ok = cli_check_endpoints(cmd, ep, CLI_EP_ALL)) != CLI_EXIT_OK ||
        (ok = cli_check_endpoints(cmd, ep, CLI_EP_QUERY | CLI_EP_CONNECT)) !=
            CLI_EXIT_OK)
        return ok;
    fonte_client_opts_init(&o);
    o.service = service;
    o.ingress = ep->ingress;
    o.egress = ep->egress;
    o.query = ep->query;
    int64_t ms = timeout_us / 1000;
    o.query_timeout_ms = ms < 1 ? 1 : ms > 86400000 ? 86400000 : (int) ms;
    o.query_retries = 1;
    o.publish_timeout_ms = o.query_timeout_ms;
    o.curve_cert = ep->curve_cert;
    o.curve_broker = ep->curve_broker;
    o.curve_listener = ep->curve_listener;
    o.max_msg = codec_limits_default.max_msg; /* publish.c checks by it */
    if ((rc = fonte_client_new(&o, c)) == FONTE_OK)
        return CLI_EXIT_OK;
    if (rc == FONTE_EPRODUCER)
        cli_error(cmd, "invalid producer name '%s': use 1..64 of [a-z0-9_-] "
                  "(--producer)", service);
    else if (rc == FONTE_EINVAL) {
        /* libfonte connected ingress and egress and one failed: which? */
        if (cli_check_endpoints(cmd, ep, CLI_EP_INGRESS | CLI_EP_EGRESS |
                                CLI_EP_CONNECT) == CLI_EXIT_OK)
            cli_error(cmd, "an endpoint is not one ZeroMQ can use (ingress "
                      "%s, egress %s, query %s); write them like "
                      "tcp://HOST:PORT", ep->ingress, ep->egress, ep->query);
    } else
        cli_error(cmd, "cannot start the client: %s", fonte_strerror(rc));
    return rc == FONTE_EINVAL || rc == FONTE_EPRODUCER ? CLI_EXIT_USAGE
                                                       : CLI_EXIT_REFUSED;
}

const char *
cli_plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

void
cli_format_duration(int64_t us, char *buf, size_t cap)
{
    if (us % 1000000 == 0)
        snprintf(buf, cap, "%lld s", (long long) (us / 1000000));
    else if (us % 1000 == 0)
        snprintf(buf, cap, "%lld ms", (long long) (us / 1000));
    else
        snprintf(buf, cap, "%lld us", (long long) us);
}

int
cli_query_failed(const char *cmd, const cli_endpoints_t *ep, fonte_err rc,
                 int64_t timeout_us)
{
    char d[32];

    switch (rc) {
    case FONTE_ETIMEOUT:
        cli_format_duration(timeout_us, d, sizeof d);
        cli_error(cmd, "the listener at %s did not answer within %s; is "
                  "`fonte up` running? (--query, FONTE_QUERY)", ep->query, d);
        return CLI_EXIT_REFUSED;
    case FONTE_EOBJECT:
    case FONTE_ETYPE:
    case FONTE_EPRODUCER:
    case FONTE_ELIMIT:
    case FONTE_EFIELD:
    case FONTE_EUTF8:
        cli_error(cmd, "%s; check the arguments (try --help)",
                  fonte_strerror(rc));
        return CLI_EXIT_USAGE;
    case FONTE_EUNAVAILABLE:
        cli_error(cmd, "the listener at %s does not serve this request "
                  "(service unavailable); is it an older version?",
                  ep->query);
        return CLI_EXIT_REFUSED;
    default:
        cli_error(cmd, "the listener at %s refused: %s (%s); see its log",
                  ep->query, fonte_strerror(rc), fonte_errname(rc));
        return CLI_EXIT_REFUSED;
    }
}

void *
cli_sub(void *ctx, const cli_endpoints_t *ep, const char *const *prefixes,
        size_t n)
{
    void *s = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    int64_t max = (int64_t) codec_limits_default.max_msg + 4096;
    fcurve_cert_t cert, broker;
    bool curve;

    if (s == NULL)
        return NULL;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    for (size_t i = 0; i < n; i++)
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, prefixes[i], strlen(prefixes[i]));
    if (cli_curve(NULL, ep, &curve, &cert, &broker) != CLI_EXIT_OK ||
        (curve && fcurve_client(s, &cert, &broker) != 0)) {
        explicit_bzero(&cert, sizeof cert);
        zmq_close(s);
        errno = EINVAL;
        return NULL;
    }
    explicit_bzero(&cert, sizeof cert);
    if (zmqx_connect(s, ep->egress) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

int
cli_feed_open(const char *cmd, const cli_endpoints_t *ep, int64_t timeout_us,
              uint64_t count, const char *const *prefixes, size_t n,
              void **ctx_p, void **sub_p)
{
    fcurve_cert_t cert, broker;
    bool curve;
    int rc;

    *ctx_p = *sub_p = NULL;
    if (timeout_us < 0 || (timeout_us > 0 && count == 0)) {
        cli_error(cmd, "--timeout needs --count and a duration over 0 "
                  "(try --help)");
        return CLI_EXIT_USAGE;
    }
    if ((rc = cli_check_endpoints(cmd, ep, CLI_EP_EGRESS)) != CLI_EXIT_OK)
        return rc;
    rc = cli_curve(cmd, ep, &curve, &cert, &broker);
    explicit_bzero(&cert, sizeof cert);
    if (rc != CLI_EXIT_OK)
        return rc;
    if ((*ctx_p = zmq_ctx_new()) == NULL ||
        (*sub_p = cli_sub(*ctx_p, ep, prefixes, n)) == NULL) {
        cli_error(cmd, "cannot connect to the broker's egress %s: %s "
                  "(--egress, FONTE_EGRESS)", ep->egress,
                  zmq_strerror(errno));
        if (*ctx_p != NULL)
            zmqx_ctx_term(*ctx_p);
        *ctx_p = NULL;
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

int
cli_recv(void *sock, void *msgs, int max_frames)
{
    zmq_msg_t *m = msgs, extra;
    int n = 0, more = 1;

    while (more) {
        zmq_msg_t *dst = n < max_frames ? &m[n] : &extra;
        zmq_msg_init(dst);
        if (zmq_msg_recv(dst, sock, 0) < 0) {
            zmq_msg_close(dst);
            cli_msgs_close(msgs, n < max_frames ? n : max_frames);
            return -1;
        }
        more = zmq_msg_more(dst);
        if (dst == &extra)
            zmq_msg_close(&extra);
        n++;
    }
    return n;
}

void
cli_msgs_close(void *msgs, int n)
{
    zmq_msg_t *m = msgs;
    for (int i = 0; i < n; i++)
        zmq_msg_close(&m[i]);
}

void
cli_format_time(int64_t us, char *buf, size_t cap)
{
    time_t s = (time_t) (us / 1000000);
    struct tm tm;
    char day[24];

    gmtime_r(&s, &tm);
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%06lldZ", day, (long long) (us % 1000000));
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
cli_base64(const void *p, size_t n)
{
    const uint8_t *s = p;
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t) s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t) s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        *o++ = b64[v >> 18 & 63];
        *o++ = b64[v >> 12 & 63];
        *o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

bool
cli_unbase64(const char *s, uint8_t **out, size_t *n_out)
{
    size_t len = strlen(s), pad = 0, n = 0;
    uint8_t *buf;

    *out = NULL;
    *n_out = 0;
    if (len % 4 != 0)
        return false;
    while (pad < 2 && pad < len && s[len - 1 - pad] == '=')
        pad++;
    if ((buf = malloc(len / 4 * 3 + 1)) == NULL)
        return false;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            char ch = s[i + k];
            const char *at = ch != '\0' ? strchr(b64, ch) : NULL;
            if (i + k >= len - pad) /* the padding */
                at = b64;
            else if (at == NULL) {
                free(buf);
                return false;
            }
            v = v << 6 | (uint32_t) (at - b64);
        }
        size_t keep = i + 4 == len ? 3 - pad : 3;
        buf[n++] = (uint8_t) (v >> 16);
        if (keep > 1)
            buf[n++] = (uint8_t) (v >> 8);
        if (keep > 2)
            buf[n++] = (uint8_t) v;
    }
    *out = buf;
    *n_out = n;
    return true;
}

/* Sets "payload_b64", and "payload" when the bytes are UTF-8 text. */
static void
set_payload(json_t *o, const void *p, size_t n)
{
    if (n == 0)
        p = ""; /* no bytes may come as NULL, and json_stringn refuses it */
    char *b = cli_base64(p, n);
    if (b != NULL)
        json_object_set_new(o, "payload_b64", json_string(b));
    free(b);
    if (codec_utf8_valid(p, n) && memchr(p, '\0', n) == NULL)
        json_object_set_new(o, "payload", json_stringn(p, n));
}

static void
set_session(json_t *o, uint64_t session)
{
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long) session);
    json_object_set_new(o, "session", json_string(hex));
}

static json_t *
replay_json(const char *id, const char *root, const char *target,
            const char *reason, uint64_t index, uint64_t total)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "replay_id", id,
                     "root", root, "target", target, "reason", reason,
                     "index", (json_int_t) index, "total", (json_int_t) total);
}

json_t *
cli_event_json_pb(const Fonte__Event *ev, const char *topic)
{
    json_t *o = json_object(), *deps = json_array(), *meta = json_object();

    if (o == NULL || deps == NULL || meta == NULL) {
        json_decref(o);
        json_decref(deps);
        json_decref(meta);
        return NULL;
    }
    if (topic != NULL)
        json_object_set_new(o, "topic", json_string(topic));
    json_object_set_new(o, "id", json_string(ev->id));
    json_object_set_new(o, "type", json_string(ev->type));
    json_object_set_new(o, "object", json_string(ev->object));
    for (size_t i = 0; i < ev->n_depends_on; i++)
        json_array_append_new(deps, json_string(ev->depends_on[i]));
    json_object_set_new(o, "depends_on", deps);
    json_object_set_new(o, "producer", json_string(ev->producer));
    set_session(o, ev->session);
    json_object_set_new(o, "producer_seq",
                        json_integer((json_int_t) ev->producer_seq));
    json_object_set_new(o, "time_us", json_integer((json_int_t) ev->time_us));
    json_object_set_new(o, "payload_type", json_string(ev->payload_type));
    set_payload(o, ev->payload.data, ev->payload.len);
    for (size_t i = 0; i < ev->n_meta; i++)
        json_object_set_new(meta, ev->meta[i]->key,
                            json_string(ev->meta[i]->value));
    json_object_set_new(o, "meta", meta);
    json_object_set_new(o, "seq", json_integer((json_int_t) ev->seq));
    if (ev->replay != NULL)
        json_object_set_new(o, "replay",
                            replay_json(ev->replay->replay_id,
                                        ev->replay->root, ev->replay->target,
                                        ev->replay->reason, ev->replay->index,
                                        ev->replay->total));
    return o;
}

json_t *
cli_event_json(const fonte_event_t *e)
{
    json_t *o = json_object(), *deps = json_array(), *meta = json_object();
    size_t n = 0;

    if (o == NULL || deps == NULL || meta == NULL) {
        json_decref(o);
        json_decref(deps);
        json_decref(meta);
        return NULL;
    }
    json_object_set_new(o, "id", json_string(fonte_event_id(e)));
    json_object_set_new(o, "type", json_string(fonte_event_type(e)));
    json_object_set_new(o, "object", json_string(fonte_event_object(e)));
    for (size_t i = 0; i < fonte_event_deps_count(e); i++)
        json_array_append_new(deps, json_string(fonte_event_dep(e, i)));
    json_object_set_new(o, "depends_on", deps);
    json_object_set_new(o, "producer", json_string(fonte_event_producer(e)));
    set_session(o, fonte_event_session(e));
    json_object_set_new(o, "producer_seq",
                        json_integer((json_int_t) fonte_event_producer_seq(e)));
    json_object_set_new(o, "time_us",
                        json_integer((json_int_t) fonte_event_time_us(e)));
    json_object_set_new(o, "payload_type",
                        json_string(fonte_event_payload_type(e)));
    const void *p = fonte_event_payload(e, &n);
    set_payload(o, p, n);
    for (size_t i = 0; i < fonte_event_meta_count(e); i++) {
        const char *k, *v;
        if (fonte_event_meta_at(e, i, &k, &v))
            json_object_set_new(meta, k, json_string(v));
    }
    json_object_set_new(o, "meta", meta);
    json_object_set_new(o, "seq",
                        json_integer((json_int_t) fonte_event_seq(e)));
    if (fonte_event_is_replay(e))
        json_object_set_new(o, "replay",
                            replay_json(fonte_event_replay_id(e),
                                        fonte_event_replay_root(e),
                                        fonte_event_replay_target(e),
                                        fonte_event_replay_reason(e),
                                        fonte_event_replay_index(e),
                                        fonte_event_replay_total(e)));
    return o;
}

json_t *
cli_stats_json(const Fonte__Stats *s, const char *topic)
{
    json_t *c = json_object(), *t = json_object(), *g = json_object();

    for (size_t i = 0; i < s->n_counters; i++)
        json_object_set_new(c, s->counters[i]->key,
                            json_integer((json_int_t) s->counters[i]->value));
    for (size_t i = 0; i < s->n_topics; i++)
        json_object_set_new(t, s->topics[i]->key,
                            json_integer((json_int_t) s->topics[i]->value));
    for (size_t i = 0; i < s->n_gauges; i++)
        json_object_set_new(g, s->gauges[i]->key,
                            json_real(s->gauges[i]->value));
    return json_pack("{s:s, s:s, s:I, s:o, s:o, s:o}", "topic", topic,
                     "source", s->source, "uptime_us",
                     (json_int_t) s->uptime_us, "counters", c, "topics", t,
                     "gauges", g);
}

const char *
cli_audit_state(int state)
{
    switch (state) {
    case FONTE__REPLAY_AUDIT__STATE__STARTED: return "STARTED";
    case FONTE__REPLAY_AUDIT__STATE__FINISHED: return "FINISHED";
    case FONTE__REPLAY_AUDIT__STATE__FAILED: return "FAILED";
    default: return "UNKNOWN";
    }
}

json_t *
cli_audit_json(const Fonte__ReplayAudit *a, const char *topic)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:I}", "topic",
                     topic, "replay_id", a->replay_id, "root", a->root,
                     "target", a->target, "reason", a->reason, "events",
                     (json_int_t) a->events, "state",
                     cli_audit_state((int) a->state), "duration_us",
                     (json_int_t) a->duration_us);
}

void
cli_print_json(FILE *out, const json_t *j)
{
    if (j == NULL)
        return;
    json_dumpf(j, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    fputc('\n', out);
}

static const char *
jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

void
cli_event_line(FILE *out, const json_t *ev)
{
    char when[40], who[160], what[96];
    const json_t *topic = json_object_get(ev, "topic");
    uint64_t seq = (uint64_t) json_integer_value(json_object_get(ev, "seq"));
    const char *payload = json_string_value(json_object_get(ev, "payload"));
    size_t n = 0;
    const char *b = jstr(ev, "payload_b64");

    cli_format_time(json_integer_value(json_object_get(ev, "time_us")), when,
                    sizeof when);
    if (seq != 0)
        snprintf(who, sizeof who, "#%llu", (unsigned long long) seq);
    else
        snprintf(who, sizeof who, "%s/%lld", jstr(ev, "producer"),
                 (long long) json_integer_value(
                     json_object_get(ev, "producer_seq")));
    n = strlen(b) / 4 * 3;
    if (n > 0 && b[strlen(b) - 1] == '=')
        n -= b[strlen(b) - 2] == '=' ? 2 : 1;
    if (payload != NULL && strcspn(payload, "\n\r\t") == strlen(payload))
        snprintf(what, sizeof what, "%.60s%s", payload,
                 strlen(payload) > 60 ? "..." : "");
    else
        snprintf(what, sizeof what, "<%zu bytes>", n);
    fprintf(out, "%s  %-24s %-24s %-*s%s%s\n", when,
            topic ? json_string_value(topic) : jstr(ev, "type"),
            jstr(ev, "object"), what[0] ? 16 : 0, who, what[0] ? " " : "",
            what); /* an empty payload: nothing, not even the padding */
}

void
cli_spec_fini(cli_spec_t *it)
{
    free(it->deps);
    free(it->meta);
    free(it->payload);
}

bool
cli_spec_from_json(cli_spec_t *it, json_t *j, char *why, size_t cap)
{
    static const char *const stamped[] = { "id", "producer", "session",
                                           "producer_seq", "time_us", "seq",
                                           "replay", "topic", NULL };
    const char *key;
    json_t *v;

    memset(it, 0, sizeof *it);
    if (!json_is_object(j)) {
        snprintf(why, cap, "not a JSON object");
        return false;
    }
    json_object_foreach(j, key, v) {
        bool known = false;
        for (const char *const *s = stamped; *s; s++)
            known |= strcmp(key, *s) == 0;
        if (known)
            continue; /* fonte stamps these itself: ignored */
        if (strcmp(key, "type") == 0 || strcmp(key, "object") == 0 ||
            strcmp(key, "payload") == 0 || strcmp(key, "payload_b64") == 0 ||
            strcmp(key, "payload_type") == 0) {
            if (!json_is_string(v)) {
                snprintf(why, cap, "\"%s\" must be a string", key);
                return false;
            }
        } else if (strcmp(key, "deps") == 0 ||
                   strcmp(key, "depends_on") == 0) {
            if (!json_is_array(v)) {
                snprintf(why, cap, "\"%s\" must be an array of strings", key);
                return false;
            }
        } else if (strcmp(key, "meta") == 0) {
            if (!json_is_object(v)) {
                snprintf(why, cap, "\"meta\" must be an object of strings");
                return false;
            }
        } else {
            snprintf(why, cap, "unknown field \"%s\" (known: type, object, "
                     "deps, payload, payload_b64, payload_type, meta)", key);
            return false;
        }
    }
    it->spec.type = json_string_value(json_object_get(j, "type"));
    it->spec.object = json_string_value(json_object_get(j, "object"));
    if (it->spec.type == NULL || it->spec.object == NULL) {
        snprintf(why, cap, "\"type\" and \"object\" are required");
        return false;
    }
    json_t *deps = json_object_get(j, "deps");
    if (deps == NULL)
        deps = json_object_get(j, "depends_on");
    size_t nd = json_array_size(deps);
    if (nd > 0) {
        if ((it->deps = calloc(nd, sizeof *it->deps)) == NULL)
            goto nomem;
        for (size_t i = 0; i < nd; i++) {
            it->deps[i] = json_string_value(json_array_get(deps, i));
            if (it->deps[i] == NULL) {
                snprintf(why, cap, "\"deps\" must be an array of strings");
                return false;
            }
        }
        it->spec.depends_on = it->deps;
        it->spec.n_depends_on = nd;
    }
    json_t *meta = json_object_get(j, "meta");
    size_t nm = json_object_size(meta);
    if (nm > 0) {
        if ((it->meta = calloc(nm, sizeof *it->meta)) == NULL)
            goto nomem;
        size_t i = 0;
        json_object_foreach(meta, key, v) {
            if (!json_is_string(v)) {
                snprintf(why, cap, "meta \"%s\" must be a string", key);
                return false;
            }
            it->meta[i].key = key;
            it->meta[i++].value = json_string_value(v);
        }
        it->spec.meta = it->meta;
        it->spec.n_meta = nm;
    }
    it->spec.payload_type =
        json_string_value(json_object_get(j, "payload_type"));
    json_t *b = json_object_get(j, "payload_b64");
    json_t *p = json_object_get(j, "payload");
    if (b != NULL) { /* wins over "payload" (replay --json prints both) */
        size_t n;
        if (!cli_unbase64(json_string_value(b), &it->payload, &n)) {
            snprintf(why, cap, "\"payload_b64\" is not base64");
            return false;
        }
        it->spec.payload = it->payload;
        it->spec.payload_len = n;
    } else if (p != NULL) {
        it->spec.payload = json_string_value(p);
        it->spec.payload_len = json_string_length(p);
    }
    return true;
nomem:
    snprintf(why, cap, "out of memory");
    return false;
}
