/* AF_UNIX sockets: socket/socketpair of every type, bind to paths, abstract names and
 * autobind, listen/connect/accept, datagrams to names, getsockname/getpeername lengths,
 * shutdown, SO_PEERCRED and the other SOL_SOCKET options, FIONREAD, poll/epoll readiness,
 * MSG_PEEK/MSG_DONTWAIT/MSG_TRUNC, blocking that ends when a peer acts, and errors.
 * Prints nothing that differs between runs (no fds, pids, inode numbers or names made
 * from them); paths live under a directory made with mkdtemp and removed at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *ename(int e) {
  switch (e) {
  case 0: return "OK";
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case EINTR: return "EINTR";
  case ENXIO: return "ENXIO";
  case EBADF: return "EBADF";
  case EAGAIN: return "EAGAIN";
  case EACCES: return "EACCES";
  case EFAULT: return "EFAULT";
  case EEXIST: return "EEXIST";
  case ENOTDIR: return "ENOTDIR";
  case EISDIR: return "EISDIR";
  case EINVAL: return "EINVAL";
  case ENOTTY: return "ENOTTY";
  case ESPIPE: return "ESPIPE";
  case EPIPE: return "EPIPE";
  case ENOTSOCK: return "ENOTSOCK";
  case EDESTADDRREQ: return "EDESTADDRREQ";
  case EMSGSIZE: return "EMSGSIZE";
  case EPROTOTYPE: return "EPROTOTYPE";
  case ENOPROTOOPT: return "ENOPROTOOPT";
  case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
  case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EADDRINUSE: return "EADDRINUSE";
  case ECONNRESET: return "ECONNRESET";
  case EISCONN: return "EISCONN";
  case ENOTCONN: return "ENOTCONN";
  case ECONNREFUSED: return "ECONNREFUSED";
  default: {
    static char buf[32];
    snprintf(buf, sizeof buf, "errno%d", e);
    return buf;
  }
  }
}

/* "what: N" for a deterministic result, "what: -1 ENAME" for a failure. */
#define T(what, expr)                                                          \
  do {                                                                         \
    errno = 0;                                                                 \
    long r_ = (long)(expr);                                                    \
    if (r_ < 0)                                                                \
      printf("%s: -1 %s\n", (what), ename(errno));                             \
    else                                                                       \
      printf("%s: %ld\n", (what), r_);                                         \
  } while (0)

/* "what: ok" for a success whose value varies (an fd), else the errno name. */
#define OK(what, expr)                                                         \
  do {                                                                         \
    errno = 0;                                                                 \
    long r_ = (long)(expr);                                                    \
    printf("%s: %s\n", (what), r_ < 0 ? ename(errno) : "ok");                  \
  } while (0)

#define SUN_OFF offsetof(struct sockaddr_un, sun_path)

static char dir[64];

static socklen_t path_addr(struct sockaddr_un *a, const char *name) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (name[0] == '/' || strchr(name, '/') == NULL)
    snprintf(a->sun_path, sizeof a->sun_path, "%s", name);
  return SUN_OFF + strlen(a->sun_path) + 1;
}

/* A path under the test directory. */
static socklen_t dir_addr(struct sockaddr_un *a, const char *name) {
  char p[108];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return path_addr(a, p);
}

/* An abstract address; the name includes the pid (at a fixed width, so the length does
 * not depend on it) so that parallel runs do not meet. */
static socklen_t abs_addr(struct sockaddr_un *a, const char *name) {
  char n[64];
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  int len = snprintf(n, sizeof n, "nv-unix-%010d-%s", (int)getpid(), name);
  memcpy(a->sun_path + 1, n, len);
  return SUN_OFF + 1 + len;
}

#define SA(a) ((struct sockaddr *)(a))

static int getint(int fd, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, name, &v, &len) < 0)
    return -errno;
  return v;
}

static const char *pollbits(int r) {
  static char b[64];
  b[0] = 0;
  if (r & POLLIN) strcat(b, "IN ");
  if (r & POLLPRI) strcat(b, "PRI ");
  if (r & POLLOUT) strcat(b, "OUT ");
  if (r & POLLERR) strcat(b, "ERR ");
  if (r & POLLHUP) strcat(b, "HUP ");
  if (r & POLLRDHUP) strcat(b, "RDHUP ");
  if (r & POLLNVAL) strcat(b, "NVAL ");
  if (!b[0]) strcpy(b, "none ");
  b[strlen(b) - 1] = 0;
  return b;
}

static void show_poll(const char *what, int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP | POLLPRI};
  int r = poll(&p, 1, 0);
  printf("poll %s: %d %s\n", what, r, pollbits(p.revents));
}

static void show_name(const char *what, int fd, int peer) {
  struct sockaddr_un a;
  memset(&a, 0x55, sizeof a);
  socklen_t len = sizeof a;
  int r = peer ? getpeername(fd, SA(&a), &len) : getsockname(fd, SA(&a), &len);
  if (r < 0) {
    printf("%s: -1 %s\n", what, ename(errno));
    return;
  }
  if (len <= SUN_OFF) {
    printf("%s: len %d unnamed\n", what, (int)len);
  } else if (a.sun_path[0] == 0) {
    printf("%s: len %d abstract\n", what, (int)len);
  } else {
    const char *p = a.sun_path;
    /* Show paths relative to the test directory. */
    if (strncmp(p, dir, strlen(dir)) == 0)
      printf("%s: len %d path $DIR%s\n", what, (int)len, p + strlen(dir));
    else
      printf("%s: len %d path %s\n", what, (int)len, p);
  }
}

/* recvfrom into a small buffer, showing the data and where it came from. */
static void show_recv(const char *what, int fd, size_t n, int flags) {
  char buf[256];
  struct sockaddr_un a;
  socklen_t alen = sizeof a;
  memset(&a, 0, sizeof a);
  if (n > sizeof buf)
    n = sizeof buf;
  ssize_t r = recvfrom(fd, buf, n, flags, SA(&a), &alen);
  if (r < 0) {
    printf("%s: -1 %s\n", what, ename(errno));
    return;
  }
  size_t shown = (size_t)r < n ? (size_t)r : n;
  printf("%s: %zd \"%.*s\" from ", what, r, (int)shown, buf);
  if (alen == 0)
    printf("(none)\n");
  else if (alen <= SUN_OFF)
    printf("unnamed\n");
  else if (a.sun_path[0] == 0)
    printf("abstract len %d\n", (int)alen);
  else
    printf("path len %d %s\n", (int)alen,
           strncmp(a.sun_path, dir, strlen(dir)) == 0 ? "$DIR/..." : a.sun_path);
}

/* In a forked child: close every inherited descriptor except `keep`, so that what the
 * parent checks next does not depend on when the child's exit releases its files. */
static void close_all_but(int keep) {
  for (int fd = 3; fd < 256; fd++)
    if (fd != keep)
      close(fd);
}

static void msleep(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void creation(void) {
  printf("-- creation\n");
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  int d = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int q = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);
  printf("types %d %d %d domain %d protocol %d\n", getint(s, SO_TYPE), getint(d, SO_TYPE),
         getint(q, SO_TYPE), getint(s, SO_DOMAIN), getint(s, SO_PROTOCOL));
  printf("cloexec %d nonblock %d\n", (fcntl(d, F_GETFD) & FD_CLOEXEC) != 0,
         (fcntl(q, F_GETFL) & O_NONBLOCK) != 0);
  struct stat st;
  fstat(s, &st);
  printf("fstat is socket: %d\n", S_ISSOCK(st.st_mode));
  int raw = socket(AF_UNIX, SOCK_RAW, 0);
  printf("SOCK_RAW becomes type %d\n", getint(raw, SO_TYPE));
  close(raw);
  OK("protocol PF_UNIX", raw = socket(AF_UNIX, SOCK_STREAM, PF_UNIX));
  close(raw);
  OK("protocol 2", socket(AF_UNIX, SOCK_STREAM, 2));
  OK("SOCK_RDM", socket(AF_UNIX, SOCK_RDM, 0));
  OK("type 12", socket(AF_UNIX, 12, 0));
  OK("bad flag", socket(AF_UNIX, SOCK_STREAM | 0x100, 0));
  printf("SO_ACCEPTCONN %d SO_ERROR %d\n", getint(s, SO_ACCEPTCONN), getint(s, SO_ERROR));
  printf("SO_SNDBUF %d SO_RCVBUF %d\n", getint(s, SO_SNDBUF), getint(s, SO_RCVBUF));
  int v = 4096;
  T("set SO_SNDBUF 4096", setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v));
  v = 1;
  T("set SO_RCVBUF 1", setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof v));
  printf("SO_SNDBUF %d SO_RCVBUF %d\n", getint(s, SO_SNDBUF), getint(s, SO_RCVBUF));
  T("set SO_PASSCRED", setsockopt(d, SOL_SOCKET, SO_PASSCRED, &v, sizeof v));
  printf("SO_PASSCRED %d\n", getint(d, SO_PASSCRED));
  T("set SO_REUSEADDR", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, sizeof v));
  printf("SO_REUSEADDR %d\n", getint(s, SO_REUSEADDR));
  T("getsockopt level IPPROTO_TCP", getsockopt(s, IPPROTO_TCP, 1, &v, &(socklen_t){4}));
  T("getsockopt unknown", getsockopt(s, SOL_SOCKET, 9999, &v, &(socklen_t){4}));
  struct ucred uc;
  socklen_t ul = sizeof uc;
  T("SO_PEERCRED unconnected", getsockopt(s, SOL_SOCKET, SO_PEERCRED, &uc, &ul));
  printf("  pid %d uid %d gid %d len %d\n", uc.pid, (int)uc.uid, (int)uc.gid, (int)ul);
  show_name("getsockname unbound", s, 0);
  show_name("getpeername unconnected", s, 1);
  show_poll("fresh stream", s);
  show_poll("fresh dgram", d);
  show_poll("fresh seqpacket", q);
  char b[4];
  T("read unconnected stream", read(s, b, 4));
  T("write unconnected stream", write(s, "x", 1));
  T("recv unconnected seqpacket", recv(q, b, 4, 0));
  T("send unconnected seqpacket", send(q, "x", 1, 0));
  T("send unconnected dgram", send(d, "x", 1, 0));
  T("shutdown unconnected", shutdown(s, SHUT_RDWR));
  T("shutdown bad how", shutdown(d, 7));
  T("accept on unbound", accept(s, NULL, NULL));
  T("listen unbound", listen(s, 5));
  T("listen dgram", listen(d, 5));
  T("accept dgram", accept(d, NULL, NULL));
  T("FIONREAD empty", ioctl(s, FIONREAD, &v) < 0 ? -1 : v);
  close(s);
  close(d);
  close(q);
}

static void binding(void) {
  printf("-- bind to paths\n");
  struct sockaddr_un a, b;
  socklen_t al = dir_addr(&a, "s1");
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  int t = socket(AF_UNIX, SOCK_STREAM, 0);
  T("bind", bind(s, SA(&a), al));
  show_name("getsockname", s, 0);
  struct stat st;
  T("stat", stat(a.sun_path, &st));
  printf("  socket %d mode %o size %ld\n", S_ISSOCK(st.st_mode), st.st_mode & 07777,
         (long)st.st_size);
  T("lstat", lstat(a.sun_path, &st));
  T("open", open(a.sun_path, O_RDWR));
  T("open O_PATH", open(a.sun_path, O_PATH) >= 0 ? 0 : -1);
  T("bind again", bind(s, SA(&a), al));
  socklen_t bl = dir_addr(&b, "s2");
  T("bind bound socket elsewhere", bind(s, SA(&b), bl));
  T("s2 left behind", access(b.sun_path, F_OK));
  T("bind taken path", bind(t, SA(&a), al));
  /* Bytes after the NUL do not count; the length reported is the path's. */
  struct sockaddr_un c;
  dir_addr(&c, "s3");
  strcpy(c.sun_path + strlen(c.sun_path) + 1, "junk");
  T("bind with junk after NUL", bind(t, SA(&c), sizeof c));
  show_name("getsockname", t, 0);
  close(t);
  t = socket(AF_UNIX, SOCK_DGRAM, 0);
  dir_addr(&c, "missing/s");
  T("bind in missing dir", bind(t, SA(&c), SUN_OFF + strlen(c.sun_path) + 1));
  T("bind addrlen 1", bind(t, SA(&a), 1));
  T("bind addrlen 200", bind(t, SA(&a), 200));
  a.sun_family = AF_INET;
  T("bind AF_INET family", bind(t, SA(&a), al));
  a.sun_family = AF_UNIX;
  /* A symlink (even dangling) in the way. */
  dir_addr(&c, "link");
  symlink("nowhere", c.sun_path);
  T("bind over dangling symlink", bind(t, SA(&c), SUN_OFF + strlen(c.sun_path) + 1));
  unlink(c.sun_path);
  /* Relative to the working directory. */
  chdir(dir);
  int r = socket(AF_UNIX, SOCK_STREAM, 0);
  T("bind relative", bind(r, SA(&c), path_addr(&c, "rel")));
  show_name("getsockname relative", r, 0);
  T("listen relative", listen(r, 1));
  int rc = socket(AF_UNIX, SOCK_STREAM, 0);
  T("connect relative", connect(rc, SA(&c), path_addr(&c, "rel")));
  T("stat relative", stat("rel", &st) == 0 && S_ISSOCK(st.st_mode) ? 0 : -1);
  /* A datagram to a relative path from a socket made before the chdir. */
  int rd = socket(AF_UNIX, SOCK_DGRAM, 0);
  T("bind dgram relative", bind(rd, SA(&c), path_addr(&c, "reld")));
  T("sendto relative", sendto(t, "rel", 3, 0, SA(&c), path_addr(&c, "reld")));
  show_recv("recv relative", rd, 8, 0);
  close(rd);
  unlink("reld");
  chdir("/");
  T("connect relative from /", connect(t, SA(&c), path_addr(&c, "rel")));
  dir_addr(&c, "rel");
  unlink(c.sun_path);
  close(r);
  close(rc);
  close(s);
  close(t);
  T("unlink", unlink(a.sun_path));
  unlink(b.sun_path);
  dir_addr(&c, "s3");
  unlink(c.sun_path);
  /* The name stays after close; connecting to it is refused. */
  s = socket(AF_UNIX, SOCK_STREAM, 0);
  al = dir_addr(&a, "gone");
  bind(s, SA(&a), al);
  listen(s, 1);
  close(s);
  s = socket(AF_UNIX, SOCK_STREAM, 0);
  T("connect to closed socket's path", connect(s, SA(&a), al));
  T("bind to closed socket's path", bind(s, SA(&a), al));
  unlink(a.sun_path);
  T("bind after unlink", bind(s, SA(&a), al));
  close(s);
  unlink(a.sun_path);
}

static void stream_connections(void) {
  printf("-- stream listen/connect/accept\n");
  struct sockaddr_un a, f;
  socklen_t al = dir_addr(&a, "srv");
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  T("connect missing path", connect(c, SA(&a), al));
  int fd = open(dir, O_RDONLY);
  close(fd);
  socklen_t fl = dir_addr(&f, "file");
  fd = open(f.sun_path, O_CREAT | O_WRONLY, 0644);
  close(fd);
  T("connect to regular file", connect(c, SA(&f), fl));
  unlink(f.sun_path);
  T("bind", bind(l, SA(&a), al));
  T("connect to non-listener", connect(c, SA(&a), al));
  int dg = socket(AF_UNIX, SOCK_DGRAM, 0);
  T("dgram connect to stream socket", connect(dg, SA(&a), al));
  close(dg);
  T("listen", listen(l, 5));
  T("listen again", listen(l, 8));
  printf("SO_ACCEPTCONN %d\n", getint(l, SO_ACCEPTCONN));
  show_poll("listener idle", l);
  int fl2 = fcntl(l, F_GETFL);
  fcntl(l, F_SETFL, fl2 | O_NONBLOCK);
  T("accept none", accept(l, NULL, NULL));
  fcntl(l, F_SETFL, fl2);
  T("listener FIONREAD", ioctl(l, FIONREAD, &fd));
  T("connect", connect(c, SA(&a), al));
  show_poll("listener with pending", l);
  show_poll("client", c);
  T("connect again", connect(c, SA(&a), al));
  T("connect connected to missing", connect(c, SA(&f), fl));
  T("listen on connected", listen(c, 1));
  T("write before accept", write(c, "early", 5));
  struct sockaddr_un p;
  socklen_t pl = sizeof p;
  memset(&p, 0x55, sizeof p);
  int s = accept4(l, SA(&p), &pl, SOCK_CLOEXEC | SOCK_NONBLOCK);
  printf("accept4: %s addrlen %d family %d\n", s >= 0 ? "ok" : ename(errno), (int)pl,
         p.sun_family);
  printf("accepted cloexec %d nonblock %d\n", (fcntl(s, F_GETFD) & FD_CLOEXEC) != 0,
         (fcntl(s, F_GETFL) & O_NONBLOCK) != 0);
  show_poll("listener after accept", l);
  show_name("accepted sockname", s, 0);
  show_name("accepted peername", s, 1);
  show_name("client sockname", c, 0);
  show_name("client peername", c, 1);
  int v;
  T("FIONREAD", ioctl(s, FIONREAD, &v) < 0 ? -1 : v);
  show_poll("accepted with data", s);
  show_recv("recv MSG_PEEK 3", s, 3, MSG_PEEK);
  show_recv("recv", s, 64, 0);
  T("recv empty MSG_DONTWAIT", recv(s, &v, 4, MSG_DONTWAIT));
  T("write ab", write(c, "ab", 2));
  T("write cd", write(c, "cd", 2));
  show_recv("stream merges writes", s, 64, 0);
  T("send back", send(s, "pong", 4, 0));
  show_recv("client recvfrom shows the server", c, 64, 0);
  T("sendto with address", sendto(c, "x", 1, 0, SA(&a), al));
  T("zero-length send", send(c, "", 0, 0));
  struct ucred uc;
  socklen_t ul = sizeof uc;
  getsockopt(c, SOL_SOCKET, SO_PEERCRED, &uc, &ul);
  printf("client SO_PEERCRED: len %d pid is me %d uid %d gid %d\n", (int)ul, uc.pid == getpid(),
         uc.uid == geteuid(), uc.gid == getegid());
  getsockopt(s, SOL_SOCKET, SO_PEERCRED, &uc, &ul);
  printf("server SO_PEERCRED: pid is me %d uid %d gid %d\n", uc.pid == getpid(),
         uc.uid == geteuid(), uc.gid == getegid());
  getsockopt(l, SOL_SOCKET, SO_PEERCRED, &uc, &ul);
  printf("listener SO_PEERCRED: pid is me %d\n", uc.pid == getpid());

  printf("-- shutdown and close\n");
  T("client SHUT_WR", shutdown(c, SHUT_WR));
  show_poll("server after client SHUT_WR", s);
  show_poll("client after own SHUT_WR", c);
  T("server read EOF", read(s, &v, 4));
  T("client write after SHUT_WR", send(c, "x", 1, MSG_NOSIGNAL));
  T("server still writes", write(s, "back", 4));
  show_recv("client reads", c, 64, 0);
  T("server SHUT_RD", shutdown(s, SHUT_RD));
  show_poll("server after both", s);
  show_poll("client after both", c);
  close(s);
  show_poll("client after server close", c);
  T("client read", read(c, &v, 4));
  T("client write", send(c, "x", 1, MSG_NOSIGNAL));
  show_name("client peername after close", c, 1);
  close(c);

  /* Closing with unread data resets the peer. */
  c = socket(AF_UNIX, SOCK_STREAM, 0);
  connect(c, SA(&a), al);
  s = accept(l, NULL, NULL);
  write(c, "unread", 6);
  close(s);
  show_poll("client after reset", c);
  printf("SO_ERROR %s\n", ename(getint(c, SO_ERROR)));
  T("read after SO_ERROR", read(c, &v, 4));
  close(c);
  c = socket(AF_UNIX, SOCK_STREAM, 0);
  connect(c, SA(&a), al);
  s = accept(l, NULL, NULL);
  write(c, "unread", 6);
  close(s);
  T("read after reset", read(c, &v, 4));
  T("read again", read(c, &v, 4));
  close(c);

  printf("-- backlog\n");
  T("listen 1", listen(l, 1));
  int cs[4];
  for (int i = 0; i < 3; i++) {
    cs[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    char what[32];
    snprintf(what, sizeof what, "nonblocking connect %d", i);
    T(what, connect(cs[i], SA(&a), al));
  }
  show_poll("client refused for backlog", cs[2]);
  s = accept(l, NULL, NULL);
  T("connect after accept", connect(cs[2], SA(&a), al));
  close(s);
  /* A blocking connect waits for room. */
  T("listen 0", listen(l, 0));
  int s1 = accept(l, NULL, NULL);
  int s2 = accept(l, NULL, NULL);
  close(s1);
  close(s2);
  cs[3] = socket(AF_UNIX, SOCK_STREAM, 0);
  T("connect fills backlog 0", connect(cs[3], SA(&a), al));
  fflush(stdout);
  pid_t kid = fork();
  if (kid == 0) {
    close_all_but(-1);
    int k = socket(AF_UNIX, SOCK_STREAM, 0);
    int r = connect(k, SA(&a), al);
    _exit(r == 0 ? 0 : 10 + errno % 100);
  }
  msleep(100);
  s = accept(l, NULL, NULL);
  int st;
  waitpid(kid, &st, 0);
  printf("blocked connect finished after accept: exit %d\n", WEXITSTATUS(st));
  close(s);
  s = accept(l, NULL, NULL);
  /* SO_PEERCRED names the connecting process. */
  fflush(stdout);
  kid = fork();
  if (kid == 0) {
    close_all_but(-1);
    int k = socket(AF_UNIX, SOCK_STREAM, 0);
    connect(k, SA(&a), al);
    char ch;
    read(k, &ch, 1);
    _exit(0);
  }
  int ks = accept(l, NULL, NULL);
  ul = sizeof uc;
  getsockopt(ks, SOL_SOCKET, SO_PEERCRED, &uc, &ul);
  printf("SO_PEERCRED of a child: pid is child %d uid %d\n", uc.pid == kid, uc.uid == geteuid());
  write(ks, "x", 1);
  waitpid(kid, &st, 0);
  close(ks);
  close(s);
  for (int i = 0; i < 4; i++)
    close(cs[i]);
  /* Closing a listener resets connections nobody accepted. */
  c = socket(AF_UNIX, SOCK_STREAM, 0);
  T("connect", connect(c, SA(&a), al));
  close(l);
  show_poll("pending client after listener close", c);
  T("read", read(c, &v, 4));
  close(c);
  c = socket(AF_UNIX, SOCK_STREAM, 0);
  T("connect after listener close", connect(c, SA(&a), al));
  close(c);
  unlink(a.sun_path);
}

static void abstract_names(void) {
  printf("-- abstract names\n");
  struct sockaddr_un a, b;
  socklen_t al = abs_addr(&a, "one");
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  T("bind abstract", bind(l, SA(&a), al));
  struct sockaddr_un g;
  socklen_t gl = sizeof g;
  getsockname(l, SA(&g), &gl);
  printf("getsockname: len matches %d, same bytes %d\n", gl == al, memcmp(&g, &a, al) == 0);
  int t = socket(AF_UNIX, SOCK_STREAM, 0);
  T("bind same name", bind(t, SA(&a), al));
  int d = socket(AF_UNIX, SOCK_DGRAM, 0);
  T("dgram binds the same name", bind(d, SA(&a), al));
  /* A name is the whole length: a longer one is another name. */
  T("bind name plus NUL", bind(t, SA(&a), al + 1));
  close(t);
  T("listen", listen(l, 4));
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  T("connect", connect(c, SA(&a), al));
  show_name("client peername", c, 1);
  int s = accept(l, NULL, NULL);
  show_name("accepted sockname", s, 0);
  T("send", send(c, "abs", 3, 0));
  show_recv("recv", s, 16, 0);
  int sq = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  T("seqpacket connect to stream name", connect(sq, SA(&a), al));
  close(sq);
  int d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
  socklen_t bl = abs_addr(&b, "two");
  T("dgram connect to unbound name", connect(d2, SA(&b), bl));
  T("dgram sendto the dgram holder", sendto(d2, "hey", 3, 0, SA(&a), al));
  show_recv("dgram holder receives", d, 16, 0);
  close(c);
  close(s);
  close(l);
  c = socket(AF_UNIX, SOCK_STREAM, 0);
  T("connect after close", connect(c, SA(&a), al));
  T("name free again", bind(c, SA(&a), al));
  close(c);
  close(d);

  printf("-- autobind\n");
  int x = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un u = {.sun_family = AF_UNIX};
  T("autobind", bind(x, SA(&u), sizeof(sa_family_t)));
  gl = sizeof g;
  getsockname(x, SA(&g), &gl);
  int hex = 1;
  for (int i = 1; i < 6; i++)
    hex &= (g.sun_path[i] >= '0' && g.sun_path[i] <= '9') ||
           (g.sun_path[i] >= 'a' && g.sun_path[i] <= 'f');
  printf("autobind name: len %d leading NUL %d five hex digits %d\n", (int)gl, g.sun_path[0] == 0,
         hex);
  struct sockaddr_un g2;
  socklen_t gl2 = sizeof g2;
  T("autobind again", bind(x, SA(&u), sizeof(sa_family_t)));
  getsockname(x, SA(&g2), &gl2);
  printf("name kept %d\n", gl2 == gl && memcmp(&g, &g2, gl) == 0);
  T("bind path after autobind", bind(x, SA(&b), dir_addr(&b, "late")));
  /* The autobound name can be sent to. */
  T("sendto autobound name", sendto(d2, "auto", 4, 0, SA(&g), gl));
  show_recv("autobound receives", x, 16, 0);
  /* SO_PASSCRED makes a sender autobind. */
  int one = 1;
  setsockopt(d2, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  T("sendto with SO_PASSCRED", sendto(d2, "cred", 4, 0, SA(&g), gl));
  show_recv("receiver sees an autobound sender", x, 16, 0);
  show_name("sender name", d2, 0);
  close(x);
  close(d2);
}

static void datagrams(void) {
  printf("-- datagrams\n");
  struct sockaddr_un a, b, n;
  socklen_t al = dir_addr(&a, "da"), bl = dir_addr(&b, "db");
  int x = socket(AF_UNIX, SOCK_DGRAM, 0);
  int y = socket(AF_UNIX, SOCK_DGRAM, 0);
  int z = socket(AF_UNIX, SOCK_DGRAM, 0);
  T("bind x", bind(x, SA(&a), al));
  T("bind y", bind(y, SA(&b), bl));
  show_poll("empty", x);
  T("sendto one", sendto(y, "one", 3, 0, SA(&a), al));
  T("sendto empty", sendto(y, "", 0, 0, SA(&a), al));
  T("sendto three", sendto(y, "three", 5, 0, SA(&a), al));
  T("unnamed sendto", sendto(z, "anon", 4, 0, SA(&a), al));
  show_poll("with data", x);
  int v;
  T("FIONREAD next datagram", ioctl(x, FIONREAD, &v) < 0 ? -1 : v);
  show_recv("recvfrom", x, 64, 0);
  show_recv("recvfrom empty datagram", x, 64, 0);
  show_recv("peek 2", x, 2, MSG_PEEK);
  show_recv("recv MSG_TRUNC into 2", x, 2, MSG_TRUNC);
  char buf[8];
  struct iovec iov = {buf, 2};
  struct sockaddr_un from;
  struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov,
                     .msg_iovlen = 1};
  T("sendto again", sendto(y, "again", 5, 0, SA(&a), al));
  T("recvmsg into 2 (the unnamed sender's)", recvmsg(x, &m, 0));
  printf("  msg_flags MSG_TRUNC %d namelen %d\n", (m.msg_flags & MSG_TRUNC) != 0,
         (int)m.msg_namelen);
  show_recv("recvfrom", x, 64, 0);
  T("recv empty", recv(x, buf, 8, MSG_DONTWAIT));
  T("sendto missing path", sendto(y, "x", 1, 0, SA(&n), dir_addr(&n, "none")));
  T("sendto bad family", sendto(y, "x", 1, 0, SA(&n), 1));
  static char big[300000];
  T("sendto too big", sendto(y, big, sizeof big, 0, SA(&a), al));
  T("sendto 200000", sendto(y, big, 200000, 0, SA(&a), al));
  T("recv 200000", recv(x, big, sizeof big, 0));
  /* A receiver not connected back takes only so many. */
  int sent = 0;
  while (sendto(y, "q", 1, MSG_DONTWAIT, SA(&a), al) == 1)
    sent++;
  printf("queued before EAGAIN: %d (%s)\n", sent, ename(errno));
  int got = 0;
  while (recv(x, buf, 8, MSG_DONTWAIT) >= 0)
    got++;
  printf("received %d\n", got);

  printf("-- connected datagrams\n");
  T("connect y to x", connect(y, SA(&a), al));
  show_name("peername", y, 1);
  T("send", send(y, "conn", 4, 0));
  show_recv("recv", x, 64, 0);
  T("write", write(y, "w", 1));
  T("read", read(x, buf, 8));
  T("connect x to y", connect(x, SA(&b), bl));
  T("third party to connected x", sendto(z, "x", 1, 0, SA(&a), al));
  T("connect z to connected x", connect(z, SA(&a), al));
  T("connect z AF_UNSPEC", connect(z, SA(&(struct sockaddr){.sa_family = AF_UNSPEC}),
                                   sizeof(struct sockaddr)));
  T("y disconnects", connect(y, SA(&(struct sockaddr){.sa_family = AF_UNSPEC}),
                             sizeof(sa_family_t)));
  show_name("peername after AF_UNSPEC", y, 1);
  T("send unconnected", send(y, "x", 1, 0));
  T("connect stream path", connect(y, SA(&n), dir_addr(&n, "srvless")));
  T("shutdown x SHUT_RD", shutdown(x, SHUT_RD));
  show_poll("x after SHUT_RD", x);
  T("recv after SHUT_RD nonblocking", recv(x, buf, 8, MSG_DONTWAIT));
  T("recv after SHUT_RD blocking", recv(x, buf, 8, 0));
  T("sendto y", sendto(z, "x", 1, 0, SA(&b), bl));
  T("send to shut-down receiver", sendto(y, "x", 1, 0, SA(&a), al));
  T("shutdown y SHUT_WR", shutdown(y, SHUT_WR));
  T("send after SHUT_WR", sendto(y, "x", 1, MSG_NOSIGNAL, SA(&a), al));
  show_poll("y after SHUT_WR", y);
  close(x);
  T("sendto closed socket's path", sendto(z, "x", 1, 0, SA(&a), al));
  close(y);
  close(z);
  unlink(a.sun_path);
  unlink(b.sun_path);
}

static void pairs(void) {
  printf("-- socketpair\n");
  int sv[2];
  T("socketpair stream", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
  show_name("pair sockname", sv[0], 0);
  show_name("pair peername", sv[0], 1);
  struct ucred uc;
  socklen_t ul = sizeof uc;
  getsockopt(sv[0], SOL_SOCKET, SO_PEERCRED, &uc, &ul);
  printf("pair SO_PEERCRED pid is me %d uid %d\n", uc.pid == getpid(), uc.uid == geteuid());
  T("write", write(sv[0], "pair", 4));
  show_recv("recvfrom (no address)", sv[1], 64, 0);
  /* A blocking read ends when a child writes. */
  fflush(stdout);
  pid_t kid = fork();
  if (kid == 0) {
    close_all_but(sv[1]);
    msleep(50);
    write(sv[1], "late", 4);
    _exit(0);
  }
  char buf[64];
  ssize_t r = read(sv[0], buf, sizeof buf);
  printf("blocking read: %zd \"%.*s\"\n", r, (int)(r > 0 ? r : 0), buf);
  waitpid(kid, NULL, 0);
  /* Fill without blocking until EAGAIN, then drain. */
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  static char big[1 << 20];
  long total = 0;
  for (;;) {
    ssize_t n = write(sv[0], big, sizeof big);
    if (n < 0)
      break;
    total += n;
  }
  printf("filled: %s, wrote something %d\n", ename(errno), total > 0);
  show_poll("full writer", sv[0]);
  long drained = 0;
  for (;;) {
    ssize_t n = recv(sv[1], big, sizeof big, MSG_DONTWAIT);
    if (n <= 0)
      break;
    drained += n;
  }
  printf("drained all %d\n", drained == total);
  show_poll("writer after drain", sv[0]);
  close(sv[0]);
  close(sv[1]);

  T("socketpair dgram", socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv));
  T("send 1", send(sv[0], "a", 1, 0));
  T("send 22", send(sv[0], "bb", 2, 0));
  T("FIONREAD", ioctl(sv[1], FIONREAD, &(int){0}) < 0 ? -1 : 0);
  int v;
  ioctl(sv[1], FIONREAD, &v);
  printf("FIONREAD next %d\n", v);
  show_recv("recv", sv[1], 64, 0);
  show_recv("recv", sv[1], 64, 0);
  show_recv("recv empty", sv[1], 64, 0);
  show_name("dgram pair peername", sv[1], 1);
  T("reply", send(sv[1], "r", 1, 0));
  close(sv[1]);
  show_poll("dgram after peer close", sv[0]);
  T("send to closed peer", send(sv[0], "x", 1, 0));
  T("send again", send(sv[0], "x", 1, 0));
  T("recv", recv(sv[0], buf, 8, 0));
  close(sv[0]);

  T("socketpair seqpacket", socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
  T("send hello", send(sv[0], "hello", 5, 0));
  T("send world", send(sv[0], "world", 5, 0));
  T("send empty", send(sv[0], "", 0, 0));
  ioctl(sv[1], FIONREAD, &v);
  printf("FIONREAD all %d\n", v);
  show_poll("seqpacket with data", sv[1]);
  show_recv("recv 3 (truncates)", sv[1], 3, 0);
  struct iovec iov = {buf, 3};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  T("recvmsg 3", recvmsg(sv[1], &m, 0));
  printf("  MSG_TRUNC %d\n", (m.msg_flags & MSG_TRUNC) != 0);
  show_recv("recv empty message", sv[1], 8, 0);
  struct sockaddr_un nowhere;
  socklen_t nl = path_addr(&nowhere, "/nowhere");
  T("sendto with address ignored", sendto(sv[1], "back", 4, 0, SA(&nowhere), nl));
  show_recv("recv", sv[0], 8, 0);
  T("SHUT_WR", shutdown(sv[0], SHUT_WR));
  show_poll("seqpacket peer after SHUT_WR", sv[1]);
  T("recv EOF", recv(sv[1], buf, 8, 0));
  close(sv[0]);
  show_poll("seqpacket after peer close", sv[1]);
  T("recv after close", recv(sv[1], buf, 8, MSG_DONTWAIT));
  T("send after close", send(sv[1], "x", 1, MSG_NOSIGNAL));
  close(sv[1]);

  T("socketpair AF_INET", socketpair(AF_INET, SOCK_STREAM, 0, sv));
  T("socketpair bad type", socketpair(AF_UNIX, SOCK_RDM, 0, sv));
  T("socketpair bad protocol", socketpair(AF_UNIX, SOCK_STREAM, 7, sv));
}

static void seqpacket_listen(void) {
  printf("-- seqpacket listen/accept\n");
  struct sockaddr_un a;
  socklen_t al = abs_addr(&a, "seq");
  int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  T("bind", bind(l, SA(&a), al));
  T("listen", listen(l, 2));
  show_poll("listener", l);
  int c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  int st = socket(AF_UNIX, SOCK_STREAM, 0);
  T("stream connect to seqpacket name", connect(st, SA(&a), al));
  close(st);
  T("connect", connect(c, SA(&a), al));
  show_poll("listener pending", l);
  T("send msg1", send(c, "msg1", 4, 0));
  T("send msg22", send(c, "msg22", 5, 0));
  int s = accept(l, NULL, NULL);
  show_recv("recv", s, 64, 0);
  show_recv("recv", s, 64, 0);
  static char big[300000];
  T("send too big", send(c, big, sizeof big, 0));
  close(c);
  show_poll("accepted after peer close", s);
  T("recv EOF", recv(s, big, 8, 0));
  close(s);
  close(l);
}

/* sendmsg with `n` fds in one SCM_RIGHTS message. */
static ssize_t send_fds(int s, const char *data, size_t len, const int *fds, int n) {
  struct iovec iov = {(void *)data, len};
  union {
    char buf[CMSG_SPACE(8 * sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                     .msg_controllen = CMSG_SPACE(n * sizeof(int))};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(n * sizeof(int));
  memcpy(CMSG_DATA(c), fds, n * sizeof(int));
  return sendmsg(s, &m, 0);
}

/* recvmsg with room for `room` fds; prints what came and returns the fds in `out`. */
static int recv_fds(const char *what, int s, int room, int flags, int *out) {
  char data[64];
  struct iovec iov = {data, sizeof data};
  union {
    char buf[CMSG_SPACE(8 * sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = room ? u.buf : NULL,
                     .msg_controllen = room ? CMSG_SPACE(room * sizeof(int)) : 0};
  ssize_t r = recvmsg(s, &m, flags);
  if (r < 0) {
    printf("%s: -1 %s\n", what, ename(errno));
    return 0;
  }
  int n = 0;
  printf("%s: %zd \"%.*s\" controllen %d CTRUNC %d", what, r, (int)r, data, (int)m.msg_controllen,
         (m.msg_flags & MSG_CTRUNC) != 0);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    printf(" [cmsg len %d level %d type %d]", (int)c->cmsg_len, c->cmsg_level, c->cmsg_type);
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      memcpy(out + n, CMSG_DATA(c), k * sizeof(int));
      n += k;
    }
  }
  printf(" fds %d", n);
  if (n > 0)
    printf(" cloexec %d", (fcntl(out[0], F_GETFD) & FD_CLOEXEC) != 0);
  printf("\n");
  return n;
}

/* Whether `fd` is the write end of the pipe whose read end is `rd`: write through it. */
static void check_pipe(const char *what, int fd, int rd) {
  char b[8];
  int w = write(fd, "via", 3);
  int r = read(rd, b, sizeof b);
  printf("%s: wrote %d read %d \"%.*s\"\n", what, w, r, r > 0 ? r : 0, b);
}

static void rights(void) {
  printf("-- SCM_RIGHTS\n");
  int sv[2], p[2], got[8], n;
  socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
  pipe(p);
  T("send one fd", send_fds(sv[0], "fd", 2, &p[1], 1));
  n = recv_fds("recvmsg", sv[1], 2, MSG_CMSG_CLOEXEC, got);
  if (n > 0) {
    check_pipe("received write end works", got[0], p[0]);
    close(got[0]);
  }
  T("send three fds", send_fds(sv[0], "xy", 2, (int[]){p[1], p[1], p[1]}, 3));
  /* CMSG_SPACE(4) has room for two. */
  n = recv_fds("recvmsg with CMSG_SPACE of one", sv[1], 1, 0, got);
  for (int i = 0; i < n; i++)
    close(got[i]);
  T("send one fd", send_fds(sv[0], "z", 1, &p[1], 1));
  n = recv_fds("recvmsg without control buffer", sv[1], 0, 0, got);
  /* Bytes sent after the files do not come in the same read. */
  T("send a with fd", send_fds(sv[0], "a", 1, &p[1], 1));
  T("send b", send(sv[0], "b", 1, 0));
  n = recv_fds("MSG_PEEK", sv[1], 2, MSG_PEEK, got);
  for (int i = 0; i < n; i++)
    close(got[i]);
  n = recv_fds("recvmsg stops after the files", sv[1], 2, 0, got);
  for (int i = 0; i < n; i++)
    close(got[i]);
  n = recv_fds("recvmsg rest", sv[1], 2, 0, got);
  /* A plain read drops the files. */
  T("send c with fd", send_fds(sv[0], "c", 1, &p[1], 1));
  char b[8];
  T("read drops them", read(sv[1], b, sizeof b));
  close(p[1]);
  T("pipe at EOF once every copy is closed", read(p[0], b, sizeof b));
  close(p[0]);
  /* Errors. */
  T("bad fd", send_fds(sv[0], "e", 1, (int[]){999}, 1));
  struct ucred uc = {getpid(), getuid(), getgid()};
  struct iovec iov = {"e", 1};
  union {
    char buf[CMSG_SPACE(sizeof uc)];
    struct cmsghdr align;
  } u;
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                     .msg_controllen = sizeof u.buf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = 77;
  c->cmsg_len = CMSG_LEN(sizeof uc);
  T("unknown cmsg type", sendmsg(sv[0], &m, 0));
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = sizeof u.buf + 8;
  T("cmsg_len past the buffer", sendmsg(sv[0], &m, 0));
  c->cmsg_len = 4;
  T("cmsg_len too small", sendmsg(sv[0], &m, 0));
  c->cmsg_level = 99;
  c->cmsg_len = CMSG_LEN(sizeof uc);
  T("other level skipped", sendmsg(sv[0], &m, 0));
  T("read it", read(sv[1], b, sizeof b));
  /* Datagrams and seqpackets carry files with the message; a socket can travel too. */
  int d[2], q[2], x[2];
  socketpair(AF_UNIX, SOCK_DGRAM, 0, d);
  socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q);
  socketpair(AF_UNIX, SOCK_STREAM, 0, x);
  T("dgram sends a socket", send_fds(d[0], "sock", 4, &x[1], 1));
  close(x[1]);
  n = recv_fds("dgram recvmsg", d[1], 1, 0, got);
  if (n > 0) {
    T("write through the passed socket", write(got[0], "hi", 2));
    T("peer reads", read(x[0], b, sizeof b));
    close(got[0]);
  }
  show_poll("peer after the passed socket closes", x[0]);
  pipe(p);
  T("seqpacket sends an fd", send_fds(q[0], "seq", 3, &p[1], 1));
  n = recv_fds("seqpacket recvmsg", q[1], 1, 0, got);
  if (n > 0) {
    check_pipe("received over seqpacket", got[0], p[0]);
    close(got[0]);
  }
  /* Across processes: a child receives a pipe end and writes to it. */
  fflush(stdout);
  pid_t kid = fork();
  if (kid == 0) {
    close_all_but(q[1]);
    int f[1];
    char data[8];
    struct iovec ci = {data, sizeof data};
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } cu;
    struct msghdr cm = {.msg_iov = &ci, .msg_iovlen = 1, .msg_control = cu.buf,
                        .msg_controllen = sizeof cu.buf};
    if (recvmsg(q[1], &cm, 0) < 0 || !CMSG_FIRSTHDR(&cm))
      _exit(2);
    memcpy(f, CMSG_DATA(CMSG_FIRSTHDR(&cm)), sizeof(int));
    _exit(write(f[0], "kid", 3) == 3 ? 0 : 3);
  }
  T("send to child", send_fds(q[0], "go", 2, &p[1], 1));
  int st;
  waitpid(kid, &st, 0);
  printf("child exit %d\n", WEXITSTATUS(st));
  close(p[1]);
  n = read(p[0], b, sizeof b);
  printf("child wrote: %d \"%.*s\"\n", n, n > 0 ? n : 0, b);
  close(p[0]);
  close(d[0]);
  close(d[1]);
  close(q[0]);
  close(q[1]);
  close(x[0]);
  close(sv[0]);
  close(sv[1]);
}

static void epolling(void) {
  printf("-- epoll\n");
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u32 = 7};
  T("epoll_ctl", epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev));
  struct epoll_event out[4];
  int n = epoll_wait(ep, out, 4, 0);
  printf("idle: %d events %#x\n", n, n > 0 ? out[0].events : 0);
  n = epoll_wait(ep, out, 4, 0);
  printf("edge-triggered again: %d\n", n);
  write(sv[1], "e", 1);
  n = epoll_wait(ep, out, 4, 1000);
  printf("after peer write: %d events %#x\n", n, n > 0 ? out[0].events : 0);
  close(sv[1]);
  n = epoll_wait(ep, out, 4, 1000);
  printf("after peer close: %d events %#x\n", n, n > 0 ? out[0].events : 0);
  close(sv[0]);

  struct sockaddr_un a;
  socklen_t al = abs_addr(&a, "ep");
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  bind(l, SA(&a), al);
  listen(l, 4);
  ev.events = EPOLLIN;
  ev.data.u32 = 9;
  epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
  n = epoll_wait(ep, out, 4, 0);
  printf("listener idle: %d\n", n);
  fflush(stdout);
  pid_t kid = fork();
  if (kid == 0) {
    close_all_but(-1);
    msleep(50);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    connect(c, SA(&a), al);
    close(c);
    _exit(0);
  }
  n = epoll_wait(ep, out, 4, 5000);
  printf("listener after a child connects: %d events %#x data %u\n", n,
         n > 0 ? out[0].events : 0, n > 0 ? out[0].data.u32 : 0);
  waitpid(kid, NULL, 0);
  int s = accept(l, NULL, NULL);
  show_poll("accepted from a child that closed", s);
  close(s);
  close(l);
  close(ep);

  /* A blocking datagram receive ends when a child sends. */
  int d[2];
  socketpair(AF_UNIX, SOCK_DGRAM, 0, d);
  fflush(stdout);
  kid = fork();
  if (kid == 0) {
    close_all_but(d[1]);
    msleep(50);
    send(d[1], "wake", 4, 0);
    _exit(0);
  }
  char buf[16];
  ssize_t r = recv(d[0], buf, sizeof buf, 0);
  printf("blocking dgram recv: %zd \"%.*s\"\n", r, (int)(r > 0 ? r : 0), buf);
  waitpid(kid, NULL, 0);
  close(d[0]);
  close(d[1]);
}

int main(void) {
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  signal(SIGPIPE, SIG_IGN);
  umask(022);
  strcpy(dir, "/tmp/nv-unix-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  creation();
  binding();
  stream_connections();
  abstract_names();
  datagrams();
  pairs();
  seqpacket_listen();
  epolling();
  rights();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "%s", dir);
  T("rmdir test directory", rmdir(cmd));
  return 0;
}
