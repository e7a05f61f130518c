/*
 * zmqx.c - ZeroMQ calls retried on EINTR (zmqx.h).
 */
#include "zmqx.h"

#include <errno.h>

#include <zmq.h>

int
zmqx_connect(void *socket, const char *endpoint)
{
    int rc;
    while ((rc = zmq_connect(socket, endpoint)) != 0 && errno == EINTR)
        ;
    return rc;
}

int
zmqx_bind(void *socket, const char *endpoint)
{
    int rc;
    while ((rc = zmq_bind(socket, endpoint)) != 0 && errno == EINTR)
        ;
    return rc;
}

void
zmqx_ctx_term(void *ctx)
{
    if (ctx == NULL)
        return;
    while (zmq_ctx_term(ctx) != 0 && errno == EINTR)
        ;
}
