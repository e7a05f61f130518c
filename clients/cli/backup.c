/*
 * backup.c - `fonte backup NAME`: asks the listener for a consistent copy
 * of its store, made while it runs, as NAME under its --backup-dir
 * (docs/operations.md, "Backups"). One BackupRequest on a REQ socket of
 * its own, sent once (a second one would fail: the name is taken) and
 * waited for up to --timeout.
 */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"

static const char usage[] =
    "usage: fonte backup NAME [--timeout D] [--json]\n"
    "\n"
    "Asks the listener (--query) to copy its whole store, as it is now,\n"
    "into a new directory NAME under its --backup-dir, while it goes on\n"
    "storing. The copy is a store of its own: fonte-listener --data opens\n"
    "it. NAME: 1..64 of [a-z0-9_-]; an existing one is refused.\n";

/* The Reply to req on a REQ to the query endpoint: FONTE_OK and *rep_p,
 * FONTE_ETIMEOUT, or another error. */
static fonte_err
ask_once(const cli_endpoints_t *ep, const Fonte__Request *req,
         int64_t timeout_us, Fonte__Reply **rep_p)
{
    fcurve_cert_t cert, broker, listener;
    char err[512];
    bool curve;
    int linger = 0, tmo = (int) (timeout_us / 1000);
    int64_t max = (int64_t) codec_limits_default.max_reply;
    codec_buf_t buf = { 0 };
    fonte_err rc = FONTE_EIO;

    if (cli_curve(NULL, ep, &curve, &cert, &broker) != CLI_EXIT_OK)
        return FONTE_EINVAL; /* checked before: cannot happen */
    if (curve && ep->curve_listener != NULL &&
        fcurve_cert_load(ep->curve_listener, false, &listener, err,
                         sizeof err) != FONTE_OK)
        return FONTE_EINVAL;
    void *ctx = zmq_ctx_new(), *s = ctx ? zmq_socket(ctx, ZMQ_REQ) : NULL;
    if (s != NULL && codec_pack(&req->base, &buf) == FONTE_OK &&
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) == 0 &&
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo) == 0 &&
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max) == 0 &&
        (!curve || fcurve_client(s, &cert, ep->curve_listener != NULL
                                               ? &listener : &broker) == 0) &&
        zmq_connect(s, ep->query) == 0 &&
        zmq_send(s, buf.data, buf.len, 0) >= 0) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0)
            rc = zmq_errno() == EAGAIN ? FONTE_ETIMEOUT : FONTE_EIO;
        else
            rc = codec_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m),
                                    &codec_limits_default, rep_p);
        zmq_msg_close(&m);
    }
    explicit_bzero(&cert, sizeof cert);
    codec_buf_free(&buf);
    if (s != NULL)
        zmq_close(s);
    if (ctx != NULL)
        zmq_ctx_term(ctx);
    return rc;
}

int
cmd_backup(int argc, char **argv)
{
    cli_endpoints_t ep;
    bool json = false, curve;
    int64_t timeout_us = 600000000; /* a big store takes minutes */
    const char *name = NULL;
    fcurve_cert_t cert, broker;

    cli_endpoints_init(&ep);
    const flag_spec_t specs[] = {
        CLI_ENDPOINT_FLAGS(ep),
        CLI_CURVE_FLAGS(ep),
        { "json", NULL, FLAG_BOOL, &json, "one JSON object", NULL },
        { "timeout", NULL, FLAG_DURATION, &timeout_us,
          "how long to wait for the copy (10m)", NULL },
        CLI_FLAGS_END,
    };
    int rc = cli_flags(specs, NULL, argc, argv, usage, 1, 1, &name, NULL);
    if (rc != CLI_CONTINUE)
        return rc;
    if (timeout_us <= 0 || timeout_us / 1000 > 86400000) {
        cli_error(argv[0], "--timeout must be more than 0 and at most a "
                  "day");
        return CLI_EXIT_USAGE;
    }
    if (codec_check_producer(name, strlen(name)) != FONTE_OK) {
        cli_error(argv[0], "'%s' is not a backup name: use 1..64 of "
                  "[a-z0-9_-]", name);
        return CLI_EXIT_USAGE;
    }
    if ((rc = cli_check_endpoints(argv[0], &ep,
                                  CLI_EP_QUERY | CLI_EP_CONNECT)) !=
            CLI_EXIT_OK ||
        (rc = cli_curve(argv[0], &ep, &curve, &cert, &broker)) !=
            CLI_EXIT_OK)
        return rc;
    explicit_bzero(&cert, sizeof cert);

    Fonte__Request req = FONTE__REQUEST__INIT;
    Fonte__BackupRequest br = FONTE__BACKUP_REQUEST__INIT;
    Fonte__Reply *rep = NULL;
    br.name = (char *) name;
    req.body_case = FONTE__REQUEST__BODY_BACKUP;
    req.backup = &br;
    fonte_err frc = ask_once(&ep, &req, timeout_us, &rep);
    if (frc != FONTE_OK)
        return cli_query_failed(argv[0], &ep, frc, timeout_us);
    if (rep->status != FONTE__REPLY__STATUS__OK ||
        rep->body_case != FONTE__REPLY__BODY_BACKUP_REPLY) {
        cli_error(argv[0], "the listener at %s refused: %s", ep.query,
                  rep->error[0] ? rep->error : "no backup in its reply");
        rc = rep->status == FONTE__REPLY__STATUS__BAD_REQUEST
                 ? CLI_EXIT_USAGE
                 : CLI_EXIT_REFUSED;
        fonte__reply__free_unpacked(rep, NULL);
        return rc;
    }
    const Fonte__BackupReply *b = rep->backup_reply;
    if (json) {
        json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I}", "path", b->path,
                              "keys", (json_int_t) b->keys, "bytes",
                              (json_int_t) b->bytes, "last_seq",
                              (json_int_t) b->last_seq, "duration_us",
                              (json_int_t) b->duration_us);
        cli_print_json(stdout, j);
        json_decref(j);
    } else {
        printf("backup    %s\nlast_seq  %llu\nkeys      %llu\nbytes     "
               "%llu (keys and values, before compression)\ntook      "
               "%.1f s\n", b->path, (unsigned long long) b->last_seq,
               (unsigned long long) b->keys, (unsigned long long) b->bytes,
               (double) b->duration_us / 1e6);
    }
    fonte__reply__free_unpacked(rep, NULL);
    return CLI_EXIT_OK;
}
