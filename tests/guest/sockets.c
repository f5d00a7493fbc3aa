// Loopback TCP and UDP over AF_INET and AF_INET6: naming, connection set-up, data, end of
// stream, errors. Prints only what is the same on every run (no port numbers).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Evaluate CALL before printing errno (argument order is unspecified). */
#define SHOW(label, call)                                                              \
    do {                                                                               \
        long r_ = (long)(call);                                                        \
        printf("%s: %ld %s\n", label, r_, r_ < 0 ? strerror(errno) : "");            \
    } while (0)

static void check(const char *what, int r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, strerror(errno));
    else
        printf("%s: ok\n", what);
}

static struct sockaddr_in v4(const char *ip, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static int port_of(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int getint(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, name, &v, &len) < 0)
        return -errno;
    return v;
}

static void tcp4(void) {
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    check("setsockopt SO_REUSEADDR", setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    printf("SO_REUSEADDR reads %d\n", getint(ls, SOL_SOCKET, SO_REUSEADDR));
    printf("SO_TYPE %d SO_DOMAIN %d SO_PROTOCOL %d\n", getint(ls, SOL_SOCKET, SO_TYPE),
           getint(ls, SOL_SOCKET, SO_DOMAIN), getint(ls, SOL_SOCKET, SO_PROTOCOL));
    struct sockaddr_in a = v4("127.0.0.1", 0);
    check("bind 127.0.0.1:0", bind(ls, (struct sockaddr *)&a, sizeof a));
    int port = port_of(ls);
    printf("port assigned: %s\n", port > 0 ? "yes" : "no");
    printf("SO_ACCEPTCONN before listen %d\n", getint(ls, SOL_SOCKET, SO_ACCEPTCONN));
    check("listen", listen(ls, 8));
    printf("SO_ACCEPTCONN after listen %d\n", getint(ls, SOL_SOCKET, SO_ACCEPTCONN));

    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    check("setsockopt TCP_NODELAY", setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    printf("TCP_NODELAY reads %d\n", getint(c, IPPROTO_TCP, TCP_NODELAY));
    a = v4("127.0.0.1", port);
    int r = connect(c, (struct sockaddr *)&a, sizeof a);
    printf("non-blocking connect: %s\n", r == 0 ? "done" : strerror(errno));
    struct pollfd p = {.fd = c, .events = POLLOUT};
    r = poll(&p, 1, 5000);
    printf("poll for POLLOUT: %d revents %#x\n", r, p.revents);
    printf("SO_ERROR %d\n", getint(c, SOL_SOCKET, SO_ERROR));
    struct pollfd lp = {.fd = ls, .events = POLLIN};
    r = poll(&lp, 1, 5000);
    printf("listener poll: %d revents %#x\n", r, lp.revents);

    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    int s = accept4(ls, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
    check("accept4", s);
    char ip[64];
    inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
    printf("peer %s len %u, port matches client: %s\n", ip, plen,
           ntohs(peer.sin_port) == port_of(c) ? "yes" : "no");
    printf("accepted socket's port is the listener's: %s\n", port_of(s) == port ? "yes" : "no");
    struct sockaddr_in pn;
    socklen_t pnl = sizeof pn;
    check("getpeername", getpeername(c, (struct sockaddr *)&pn, &pnl));
    printf("client's peer port matches: %s\n", ntohs(pn.sin_port) == port ? "yes" : "no");

    printf("send %zd\n", send(c, "hello", 5, 0));
    char buf[64];
    struct pollfd sp = {.fd = s, .events = POLLIN};
    poll(&sp, 1, 5000);
    int avail = -1;
    ioctl(s, FIONREAD, &avail);
    printf("FIONREAD %d\n", avail);
    printf("peek %zd\n", recv(s, buf, sizeof buf, MSG_PEEK));
    ssize_t n = recv(s, buf, sizeof buf, 0);
    printf("recv %zd '%.*s'\n", n, (int)n, buf);
    SHOW("recv on empty non-blocking", recv(s, buf, sizeof buf, MSG_DONTWAIT));
    check("shutdown SHUT_WR", shutdown(c, SHUT_WR));
    SHOW("recv after peer's SHUT_WR", recv(s, buf, sizeof buf, 0));
    SHOW("send after own SHUT_WR", send(c, "x", 1, MSG_NOSIGNAL));
    printf("server send %zd\n", send(s, "bye", 3, 0));
    p.events = POLLIN;
    poll(&p, 1, 5000);
    n = recv(c, buf, sizeof buf, 0);
    printf("client recv %zd '%.*s'\n", n, (int)n, buf);
    close(s);
    poll(&p, 1, 5000);
    printf("client recv after close: %zd\n", recv(c, buf, sizeof buf, 0));
    close(c);

    int nb = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    SHOW("getpeername unconnected", getpeername(nb, (struct sockaddr *)&pn, &pnl));
    close(nb);
    struct sockaddr_in acc;
    socklen_t accl = sizeof acc;
    int ls2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    a = v4("127.0.0.1", 0);
    bind(ls2, (struct sockaddr *)&a, sizeof a);
    listen(ls2, 1);
    SHOW("accept with none pending", accept(ls2, (struct sockaddr *)&acc, &accl));
    int taken = port_of(ls2);
    int dup = socket(AF_INET, SOCK_STREAM, 0);
    a = v4("0.0.0.0", taken);
    SHOW("bind to a port in use", bind(dup, (struct sockaddr *)&a, sizeof a));
    close(dup);
    close(ls2);
    close(ls);

    // A port nobody listens on: the connection is refused.
    int cr = socket(AF_INET, SOCK_STREAM, 0);
    a = v4("127.0.0.1", taken);
    SHOW("connect to a closed port", connect(cr, (struct sockaddr *)&a, sizeof a));
    close(cr);
    int na = socket(AF_INET, SOCK_STREAM, 0);
    a = v4("192.0.2.77", 0);
    SHOW("bind to a foreign address", bind(na, (struct sockaddr *)&a, sizeof a));
    close(na);
}

static void udp4(void) {
    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = v4("127.0.0.1", 0);
    check("udp bind", bind(u1, (struct sockaddr *)&a, sizeof a));
    a = v4("127.0.0.1", port_of(u1));
    printf("sendto %zd\n", sendto(u2, "ping", 4, 0, (struct sockaddr *)&a, sizeof a));
    printf("sender got a port: %s\n", port_of(u2) > 0 ? "yes" : "no");
    char buf[64];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(u1, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    char ip[64];
    inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
    printf("recvfrom %zd '%.*s' from %s, port matches: %s\n", n, (int)n, buf, ip,
           ntohs(from.sin_port) == port_of(u2) ? "yes" : "no");
    sendto(u2, "0123456789", 10, 0, (struct sockaddr *)&a, sizeof a);
    printf("truncated recv with MSG_TRUNC: %zd\n", recv(u1, buf, 4, MSG_TRUNC));
    check("udp connect", connect(u2, (struct sockaddr *)&a, sizeof a));
    printf("send on connected %zd\n", send(u2, "x", 1, 0));
    struct msghdr m;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
    memset(&m, 0, sizeof m);
    m.msg_name = &from;
    m.msg_namelen = sizeof from;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    n = recvmsg(u1, &m, 0);
    printf("recvmsg %zd namelen %u flags %d\n", n, m.msg_namelen, m.msg_flags);
    SHOW("recv on empty", recv(u1, buf, sizeof buf, MSG_DONTWAIT));
    int u3 = socket(AF_INET, SOCK_DGRAM, 0);
    SHOW("send unconnected without address", send(u3, "x", 1, 0));
    close(u1);
    close(u2);
    close(u3);
}

static void dual_stack(void) {
    int ls = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_addr = in6addr_any;
    check("bind [::]:0", bind(ls, (struct sockaddr *)&a6, sizeof a6));
    check("listen v6", listen(ls, 4));
    int port = port_of(ls);
    printf("IPV6_V6ONLY %d\n", getint(ls, IPPROTO_IPV6, IPV6_V6ONLY));

    int c4 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = v4("127.0.0.1", port);
    check("v4 connect to a v6 listener", connect(c4, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_in6 peer;
    socklen_t pl = sizeof peer;
    int s = accept(ls, (struct sockaddr *)&peer, &pl);
    char ip[64];
    inet_ntop(AF_INET6, &peer.sin6_addr, ip, sizeof ip);
    printf("v4 peer seen as %s (len %u)\n", ip, pl);
    close(s);
    close(c4);

    int c6 = socket(AF_INET6, SOCK_STREAM, 0);
    a6.sin6_addr = in6addr_loopback;
    a6.sin6_port = htons(port);
    check("connect [::1]", connect(c6, (struct sockaddr *)&a6, sizeof a6));
    pl = sizeof peer;
    s = accept(ls, (struct sockaddr *)&peer, &pl);
    inet_ntop(AF_INET6, &peer.sin6_addr, ip, sizeof ip);
    printf("v6 peer %s\n", ip);
    printf("v6 echo %zd\n", send(c6, "abc", 3, 0));
    char buf[8];
    printf("v6 recv %zd\n", recv(s, buf, sizeof buf, 0));
    close(s);
    close(c6);
    close(ls);
}

int main(void) {
    printf("-- tcp over 127.0.0.1\n");
    tcp4();
    printf("-- udp over 127.0.0.1\n");
    udp4();
    printf("-- dual stack\n");
    dual_stack();
    return 0;
}
