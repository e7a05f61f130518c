/*
 * testutil_net.c - loopback ports for tests (testutil.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <zmq.h>

#include "testutil.h"

unsigned
tu_free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *) &a, &len) != 0)
        abort(); /* no loopback: nothing a test could do */
    close(fd);
    return ntohs(a.sin_port);
}

static void *tu_socks[TU_SOCKS_MAX];

int
tu_sock_track(void *s)
{
    for (size_t i = 0; i < TU_SOCKS_MAX; i++)
        if (tu_socks[i] == NULL) {
            tu_socks[i] = s;
            return 0;
        }
    return -1;
}

void
tu_sock_forget(void *s)
{
    for (size_t i = 0; i < TU_SOCKS_MAX; i++)
        if (tu_socks[i] == s)
            tu_socks[i] = NULL;
}

void
tu_sock_close(void *s)
{
    tu_sock_forget(s);
    zmq_close(s);
}

void
tu_socks_close_all(void)
{
    for (size_t i = 0; i < TU_SOCKS_MAX; i++)
        if (tu_socks[i] != NULL)
            tu_sock_close(tu_socks[i]);
}
