/*
 * The reference point of the `http` bench scenario: the least an evhttp server can do for the same load.
 * One event base, POST /v1/commands answered at once with a fixed 16-result reply, the body not even read.
 * Compiled by asynccom-bench at bench time (cc -O2 bare-evhttp.c -levent); our own code, not a dependency.
 *
 *   bare-evhttp PORT     prints "listening on PORT" (the real one for 0) and serves until killed
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

static const char reply[] = "{\"results\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"sum\":16,\"unknown\":0}\n";

static void handle(struct evhttp_request *req, void *arg) {
    (void)arg;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), reply, sizeof reply - 1);
    evhttp_send_reply(req, 200, "OK", NULL);
}

int main(int argc, char **argv) {
    /* The bench may spawn us with signals blocked: let SIGTERM stop us. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_IGN);
    int port = argc > 1 ? atoi(argv[1]) : 0;
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_gencb(http, handle, NULL);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", (unsigned short)port);
    if (!bound) { perror("bind"); return 1; }
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&addr, &len);
    printf("listening on %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    event_base_dispatch(base);
    return 0;
}
