/*
 * zmqx.h - the ZeroMQ calls a signal can cut short, retried.
 *
 * zmq_connect and zmq_bind first process the socket's pending commands,
 * and that wait fails with EINTR when a signal arrives, before anything
 * is done: the call is simply made again. zmq_ctx_term fails with EINTR
 * when a signal interrupts its wait for the context's sockets to close,
 * and the context is then not terminated ("it can be restarted",
 * zmq_ctx_term(3)): left at that, its I/O threads would never end. A
 * process with profiling timers, SIGCHLD or a signal-driven host loop
 * gets signals at any moment, so every connect, bind and term of
 * fonte's goes through these.
 */
#ifndef FONTE_ZMQX_H
#define FONTE_ZMQX_H

/* zmq_connect / zmq_bind, again while they fail with EINTR: 0 or -1
 * (errno). */
int zmqx_connect(void *socket, const char *endpoint);
int zmqx_bind(void *socket, const char *endpoint);

/* zmq_ctx_term, again while it fails with EINTR. NULL-safe. */
void zmqx_ctx_term(void *ctx);

#endif
