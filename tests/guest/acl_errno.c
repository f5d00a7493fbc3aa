/* What a program sees when the network refuses a flow: TCP connect (blocking, and
 * non-blocking + poll + SO_ERROR) and UDP sendto / connect+send to a denied port, and a TCP
 * connect to an allowed port that must succeed.
 *
 * Usage: acl_errno PORT_DENIED PORT_ALLOWED [POLL_MS], with the IPv4 address of the peer
 * on stdin (one line): the sandbox's peer address is known only once `runsc do` has set up
 * its network, after this program has started. POLL_MS (default 30000) bounds the wait
 * for the non-blocking connect in (b).
 *
 * Natively it runs in a network namespace whose iptables OUTPUT chain drops the denied
 * flows; in the sandbox, the ACL denies them. Both runs must print the same bytes, so it
 * prints only return values, errno names and poll events, never addresses or ports.
 * Exit status: 0 when the allowed connect succeeded, 1 when not, 2 on bad usage. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *errname(int e) {
  switch (e) {
  case 0: return "OK";
  case EPERM: return "EPERM";
  case EINTR: return "EINTR";
  case EBADF: return "EBADF";
  case EAGAIN: return "EAGAIN";
  case ENOMEM: return "ENOMEM";
  case EACCES: return "EACCES";
  case EFAULT: return "EFAULT";
  case EINVAL: return "EINVAL";
  case EPIPE: return "EPIPE";
  case ENOBUFS: return "ENOBUFS";
  case EMSGSIZE: return "EMSGSIZE";
  case EDESTADDRREQ: return "EDESTADDRREQ";
  case EADDRINUSE: return "EADDRINUSE";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case ENETDOWN: return "ENETDOWN";
  case ENETUNREACH: return "ENETUNREACH";
  case ECONNABORTED: return "ECONNABORTED";
  case ECONNRESET: return "ECONNRESET";
  case EISCONN: return "EISCONN";
  case ENOTCONN: return "ENOTCONN";
  case ETIMEDOUT: return "ETIMEDOUT";
  case ECONNREFUSED: return "ECONNREFUSED";
  case EHOSTDOWN: return "EHOSTDOWN";
  case EHOSTUNREACH: return "EHOSTUNREACH";
  case EALREADY: return "EALREADY";
  case EINPROGRESS: return "EINPROGRESS";
  default: {
    static char buf[32];
    snprintf(buf, sizeof buf, "errno%d", e);
    return buf;
  }
  }
}

/* "what: = R" on success, "what: -1 ENAME" on failure. */
static void show(const char *what, long r, int err) {
  if (r < 0)
    printf("%s: -1 %s\n", what, errname(err));
  else
    printf("%s: = %ld\n", what, r);
  fflush(stdout);
}

static void show_revents(const char *what, int r, int err, short ev) {
  if (r < 0) {
    printf("%s: -1 %s\n", what, errname(err));
  } else {
    printf("%s: = %d revents", what, r);
    if (ev == 0)
      printf(" 0");
    if (ev & POLLIN) printf(" POLLIN");
    if (ev & POLLOUT) printf(" POLLOUT");
    if (ev & POLLERR) printf(" POLLERR");
    if (ev & POLLHUP) printf(" POLLHUP");
    if (ev & POLLRDHUP) printf(" POLLRDHUP");
    if (ev & POLLNVAL) printf(" POLLNVAL");
    if (ev & ~(POLLIN | POLLOUT | POLLERR | POLLHUP | POLLRDHUP | POLLNVAL))
      printf(" other=%#x", ev & ~(POLLIN | POLLOUT | POLLERR | POLLHUP | POLLRDHUP | POLLNVAL));
    printf("\n");
  }
  fflush(stdout);
}

static void show_so_error(const char *what, int fd) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &len) < 0)
    printf("%s: getsockopt -1 %s\n", what, errname(errno));
  else
    printf("%s: %s\n", what, errname(v));
  fflush(stdout);
}

static int sock(int type) {
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    printf("socket: -1 %s\n", errname(errno));
    exit(2);
  }
  return fd;
}

/* A TCP socket for the denied port. TCP_SYNCNT 1 makes Linux give up after 1 + 2 s instead
 * of tcp_syn_retries' 127 s; it does not change what the program is told (not printed: a
 * stack may store it without honouring it). */
static int tcp_denied(int flags) {
  int fd = sock(SOCK_STREAM | flags);
  int syncnt = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_SYNCNT, &syncnt, sizeof syncnt);
  return fd;
}

static struct sockaddr_in peer;

static struct sockaddr *at(int port) {
  peer.sin_port = htons(port);
  return (struct sockaddr *)&peer;
}

static int port_arg(const char *s) {
  char *end;
  long p = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || p < 1 || p > 65535) {
    fprintf(stderr, "acl_errno: bad port %s\n", s);
    exit(2);
  }
  return (int)p;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: acl_errno PORT_DENIED PORT_ALLOWED [POLL_MS] < ADDR\n");
    return 2;
  }
  int denied = port_arg(argv[1]);
  int allowed = port_arg(argv[2]);
  int poll_ms = argc == 4 ? atoi(argv[3]) : 30000;
  char line[64];
  if (!fgets(line, sizeof line, stdin)) {
    fprintf(stderr, "acl_errno: no address on stdin\n");
    return 2;
  }
  line[strcspn(line, "\r\n")] = '\0';
  memset(&peer, 0, sizeof peer);
  peer.sin_family = AF_INET;
  if (inet_pton(AF_INET, line, &peer.sin_addr) != 1) {
    fprintf(stderr, "acl_errno: bad IPv4 address %s\n", line);
    return 2;
  }
  long r;
  int e;

  /* (a) blocking TCP connect to the denied port. */
  int fd = tcp_denied(0);
  errno = 0;
  r = connect(fd, at(denied), sizeof peer);
  e = errno;
  show("a tcp blocking connect denied", r, e);
  show_so_error("a SO_ERROR after", fd);
  close(fd);

  /* (b) non-blocking TCP connect, poll for writability, then SO_ERROR. */
  fd = tcp_denied(SOCK_NONBLOCK);
  errno = 0;
  r = connect(fd, at(denied), sizeof peer);
  e = errno;
  show("b tcp nonblocking connect denied", r, e);
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  errno = 0;
  r = poll(&p, 1, poll_ms);
  e = errno;
  show_revents("b poll POLLOUT", (int)r, e, p.revents);
  show_so_error("b SO_ERROR", fd);
  show_so_error("b SO_ERROR again", fd);
  errno = 0;
  r = connect(fd, at(denied), sizeof peer);
  e = errno;
  show("b connect again", r, e);
  close(fd);

  /* (c) UDP sendto the denied port, twice (no state is kept between datagrams). */
  fd = sock(SOCK_DGRAM);
  for (int i = 0; i < 2; i++) {
    errno = 0;
    r = sendto(fd, "x", 1, 0, at(denied), sizeof peer);
    e = errno;
    show(i == 0 ? "c udp sendto denied" : "c udp sendto denied again", r, e);
  }
  show_so_error("c SO_ERROR", fd);
  close(fd);

  /* (d) UDP connect (sends nothing) and send. */
  fd = sock(SOCK_DGRAM);
  errno = 0;
  r = connect(fd, at(denied), sizeof peer);
  e = errno;
  show("d udp connect denied", r, e);
  errno = 0;
  r = send(fd, "x", 1, 0);
  e = errno;
  show("d udp send", r, e);
  errno = 0;
  r = write(fd, "x", 1);
  e = errno;
  show("d udp write", r, e);
  show_so_error("d SO_ERROR", fd);
  close(fd);

  /* (e) blocking TCP connect to the allowed port: a server listens there. */
  fd = sock(SOCK_STREAM);
  errno = 0;
  r = connect(fd, at(allowed), sizeof peer);
  e = errno;
  show("e tcp connect allowed", r, e);
  int ok = r == 0;
  if (ok) {
    errno = 0;
    r = write(fd, "hello\n", 6);
    e = errno;
    show("e write", r, e);
  }
  close(fd);

  /* (f) UDP sendto the allowed port: the deny is per port, not per host. */
  fd = sock(SOCK_DGRAM);
  errno = 0;
  r = sendto(fd, "x", 1, 0, at(allowed), sizeof peer);
  e = errno;
  show("f udp sendto allowed", r, e);
  close(fd);

  return ok ? 0 : 1;
}
