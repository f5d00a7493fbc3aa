/* isolation: probes what a guest can see of its host and prints it, one finding per line,
 * for tests/tests/confinement.rs to judge. Sandbox only: it is run as a container's init
 * with a root file system the test built, and never judges anything itself.
 *
 *   isolation HOST_PID MARKER REL PORT ABSTRACT IFNAME...
 *
 * HOST_PID is a process on the host (the test's own). MARKER is the absolute host path of
 * a file outside the container's root; REL is the same file relative to the root
 * directory (`../../outside/marker`). The test plants symbolic links in the root that
 * point at it (/abs_link, /rel_link, /dir_link, /sub/deep_link, /chain1 → /chain2).
 * PORT is a TCP port the host listens on at 127.0.0.1, ABSTRACT an abstract AF_UNIX
 * name it listens on: the guest's loopback and socket names are its own. IFNAME... are the
 * host's interface names, probed by position so that they are never printed.
 *
 * Lines:
 *   pid SELF / ppid N / proc-entry N / kill-host: ERR / proc-host: ERR
 *   open LABEL: ERR | READ <first line>       stat LABEL: ERR | EXISTS
 *   readlink PATH: TARGET | ERR
 *   list LABEL: NAME...  (sorted, "." and ".." left out)  /  list LABEL failed: ERR
 *   iface METHOD NAME   /   METHOD: ERR   /   ifindex argN: ERR | INDEX
 *   connect host-tcp: ERR | OK   /   connect host-abstract: ERR | OK */
#include "nv.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char path_buf[4096];

/* errname, plus the errno a sandbox without netlink answers with. */
static const char *ename(int e) {
  if (e == EAFNOSUPPORT) return "EAFNOSUPPORT";
  if (e == ECONNREFUSED) return "ECONNREFUSED";
  if (e == ENETUNREACH) return "ENETUNREACH";
  return errname(e);
}

static const char *cat(const char *a, const char *b) {
  snprintf(path_buf, sizeof path_buf, "%s%s", a, b);
  return path_buf;
}

/* Opens `path` (relative to `dirfd`) for reading and prints what came of it. */
static void probe_at(const char *label, int dirfd, const char *path) {
  int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    printf("open %s: %s\n", label, errname(errno));
  } else {
    char buf[256] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) {
      printf("open %s: READ failed %s\n", label, errname(errno));
    } else {
      buf[strcspn(buf, "\n")] = 0;
      printf("open %s: READ %s\n", label, buf);
    }
    close(fd);
  }
  struct stat st;
  if (fstatat(dirfd, path, &st, 0) == 0)
    printf("stat %s: EXISTS\n", label);
  else
    printf("stat %s: %s\n", label, errname(errno));
}

static void probe(const char *label, const char *path) { probe_at(label, AT_FDCWD, path); }

static void show_link(const char *path) {
  char target[4096];
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) {
    printf("readlink %s: %s\n", path, errname(errno));
    return;
  }
  target[n] = 0;
  printf("readlink %s: %s\n", path, target);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Prints the names in a directory, sorted, on one line. */
static void list(const char *label, const char *path) {
  DIR *d = opendir(path);
  if (!d) {
    printf("list %s failed: %s\n", label, errname(errno));
    return;
  }
  char *names[1024];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 1024)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, n, sizeof names[0], by_name);
  printf("list %s:", label);
  for (int i = 0; i < n; i++) printf(" %s", names[i]);
  printf("\n");
}

static void processes(const char *host_pid) {
  printf("pid %d\n", getpid());
  printf("ppid %d\n", getppid());
  DIR *d = opendir("/proc");
  if (!d) {
    printf("proc: %s\n", errname(errno));
  } else {
    struct dirent *e;
    while ((e = readdir(d)))
      if (e->d_name[0] >= '0' && e->d_name[0] <= '9') printf("proc-entry %s\n", e->d_name);
    closedir(d);
  }
  pid_t hp = (pid_t)atoi(host_pid);
  printf("kill-host: %s\n", kill(hp, 0) == 0 ? "OK" : errname(errno));
  char p[64];
  snprintf(p, sizeof p, "/proc/%d/status", (int)hp);
  int fd = open(p, O_RDONLY);
  printf("proc-host: %s\n", fd >= 0 ? "OK" : errname(errno));
  if (fd >= 0) close(fd);
}

static void files(const char *marker, const char *rel) {
  probe("plain", marker);
  probe("dotdot-abs", cat("/../../../../..", marker));
  probe("dotdot-rel", cat("/", rel));
  if (chdir("/") == 0) probe("cwd-rel", rel);
  if (chdir("/sub") == 0) {
    probe("sub-dotdot-rel", cat("../", rel));
    probe("sub-dotdot-abs", cat("../../../../../..", marker));
    char cwd[4096];
    printf("getcwd in /sub/..: %s\n", chdir("..") == 0 && getcwd(cwd, sizeof cwd) ? cwd : errname(errno));
  }
  if (chdir("/..") == 0) {
    char cwd[4096];
    printf("getcwd in /..: %s\n", getcwd(cwd, sizeof cwd) ? cwd : errname(errno));
  }
  probe("symlink-abs", "/abs_link");
  probe("symlink-rel", "/rel_link");
  probe("symlink-dir", "/dir_link/marker");
  probe("symlink-deep", "/sub/deep_link");
  probe("symlink-chain", "/chain1/marker");
  probe("proc-self-root-rel", cat("/proc/self/root/", rel));
  probe("proc-self-root-abs", cat("/proc/self/root/../..", marker));
  probe("proc-1-root", cat("/proc/1/root/../..", marker));
  probe("proc-1-root-rel", cat("/proc/1/root/", rel));
  if (chdir("/") == 0) {
    probe("proc-self-cwd-rel", cat("/proc/self/cwd/", rel));
    probe("proc-self-cwd-abs", cat("/proc/self/cwd/../..", marker));
  }
  int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int sub = open("/sub", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root >= 0) {
    probe_at("openat-root-rel", root, rel);
    probe_at("openat-root-abs", root, cat("../../../../..", marker));
    char fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d/", root);
    probe("proc-self-fd-rel", cat(fdpath, rel));
  }
  if (sub >= 0) probe_at("openat-sub-rel", sub, cat("../", rel));
  int opath = open("/sub", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (opath >= 0) probe_at("openat-opath-rel", opath, cat("../", rel));
  show_link("/proc/self/root");
  show_link("/proc/1/root");
  show_link("/proc/self/cwd");
  show_link("/proc/self/exe");
  if (root >= 0) {
    char fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", root);
    show_link(fdpath);
  }
  list("root", "/");
  list("root-dotdot", "/../..");
  list("proc-self-root-dotdot", "/proc/self/root/..");
  /* What a mount table or a map could give away of the host's paths. */
  FILE *f = fopen("/proc/self/mounts", "r");
  char line[512];
  while (f && fgets(line, sizeof line, f)) printf("mounts: %s", line);
  if (f) fclose(f);
  f = fopen("/proc/self/maps", "r");
  while (f && fgets(line, sizeof line, f)) printf("maps: %s", line);
  if (f) fclose(f);
}

/* linkat(AT_SYMLINK_FOLLOW) of `from` to `to`, then a probe of `to`. */
static void hardlink(const char *label, const char *from, const char *to) {
  int r = linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW);
  printf("link %s: %s\n", label, r == 0 ? "OK" : errname(errno));
  probe(label, to);
}

/* A writable volume (a bind of host directory D/vol at /vol, beside D/outside): links the
 * guest makes there must resolve in the guest's tree, never the host's. The test planted
 * /vol/planted_abs and /vol/planted_rel (→ ../outside/marker) in the source too. */
static void volume(const char *marker) {
  struct stat st;
  if (stat("/vol", &st) != 0) {
    printf("volume: %s\n", errname(errno));
    return;
  }
  printf("symlink vol-rel: %s\n", symlink("../outside/marker", "/vol/esc_rel") == 0 ? "OK" : errname(errno));
  printf("symlink vol-abs: %s\n", symlink(marker, "/vol/esc_abs") == 0 ? "OK" : errname(errno));
  printf("mkdir vol-d: %s\n", mkdir("/vol/d", 0755) == 0 ? "OK" : errname(errno));
  printf("symlink vol-up: %s\n", symlink("../../outside", "/vol/d/up") == 0 ? "OK" : errname(errno));
  probe("vol-rel", "/vol/esc_rel");
  probe("vol-abs", "/vol/esc_abs");
  probe("vol-up", "/vol/d/up/marker");
  probe("vol-planted-abs", "/vol/planted_abs");
  probe("vol-planted-rel", "/vol/planted_rel");
  probe("vol-dotdot", "/vol/../../outside/marker");
  /* A hard link made by following a link must follow it in the guest's tree. */
  hardlink("vol-hard-esc", "/vol/esc_rel", "/vol/hard_esc");
  hardlink("vol-hard-planted", "/vol/planted_abs", "/vol/hard_planted");
  /* Renaming a link keeps it a link; opening it still finds nothing. */
  printf("rename vol: %s\n", rename("/vol/esc_abs", "/vol/d/moved") == 0 ? "OK" : errname(errno));
  probe("vol-moved", "/vol/d/moved");
  list("vol", "/vol");
}

/* The host's loopback services and abstract socket names are not the guest's. */
static void sockets(const char *port, const char *abstract) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int r = s < 0 ? -1 : connect(s, (struct sockaddr *)&in, sizeof in);
  printf("connect host-tcp: %s\n", r == 0 ? "OK" : ename(errno));
  if (s >= 0) close(s);
  s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  size_t n = strlen(abstract);
  if (n > sizeof un.sun_path - 1) n = sizeof un.sun_path - 1;
  memcpy(un.sun_path + 1, abstract, n); /* sun_path[0] = 0: the abstract namespace */
  r = s < 0 ? -1 : connect(s, (struct sockaddr *)&un, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n));
  printf("connect host-abstract: %s\n", r == 0 ? "OK" : ename(errno));
  if (s >= 0) close(s);
}

/* Interface names through every way a program might ask. */
static void interfaces(int argc, char **argv, int first_ifname) {
  list("sys-class-net", "/sys/class/net");
  FILE *f = fopen("/proc/net/dev", "r");
  if (!f) {
    printf("proc-net-dev: %s\n", ename(errno));
  } else {
    char line[512];
    while (fgets(line, sizeof line, f)) {
      char *colon = strchr(line, ':');
      if (!colon) continue;
      *colon = 0;
      char *name = line + strspn(line, " ");
      printf("iface proc-net-dev %s\n", name);
    }
    fclose(f);
  }
  struct if_nameindex *ni = if_nameindex();
  if (!ni) {
    printf("if_nameindex: %s\n", ename(errno));
  } else {
    for (struct if_nameindex *i = ni; i->if_index; i++) printf("iface if_nameindex %s\n", i->if_name);
    if_freenameindex(ni);
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    printf("inet socket: %s\n", ename(errno));
  } else {
    struct ifreq reqs[64];
    struct ifconf ifc = {.ifc_len = sizeof reqs, .ifc_req = reqs};
    if (ioctl(s, SIOCGIFCONF, &ifc) < 0) {
      printf("SIOCGIFCONF: %s\n", ename(errno));
    } else {
      for (int i = 0; i < ifc.ifc_len / (int)sizeof reqs[0]; i++) printf("iface SIOCGIFCONF %s\n", reqs[i].ifr_name);
    }
    for (int a = first_ifname; a < argc; a++) {
      struct ifreq r = {0};
      snprintf(r.ifr_name, sizeof r.ifr_name, "%s", argv[a]);
      if (ioctl(s, SIOCGIFINDEX, &r) < 0)
        printf("ifindex arg%d: %s\n", a, ename(errno));
      else
        printf("ifindex arg%d: %d\n", a, r.ifr_ifindex);
    }
    close(s);
  }
  int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (nl < 0) {
    printf("netlink: %s\n", ename(errno));
    return;
  }
  struct {
    struct nlmsghdr h;
    struct ifinfomsg i;
  } req = {.h = {.nlmsg_len = sizeof req, .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
           .i = {.ifi_family = AF_UNSPEC}};
  if (send(nl, &req, sizeof req, 0) < 0) {
    printf("netlink send: %s\n", ename(errno));
    close(nl);
    return;
  }
  static char buf[65536];
  for (int done = 0; !done;) {
    ssize_t n = recv(nl, buf, sizeof buf, 0);
    if (n <= 0) {
      printf("netlink recv: %s\n", n < 0 ? ename(errno) : "EOF");
      break;
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
        done = 1;
        break;
      }
      if (h->nlmsg_type != RTM_NEWLINK) continue;
      struct ifinfomsg *ifi = NLMSG_DATA(h);
      int len = IFLA_PAYLOAD(h);
      for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len))
        if (a->rta_type == IFLA_IFNAME) printf("iface netlink %s\n", (char *)RTA_DATA(a));
    }
  }
  close(nl);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: isolation HOST_PID MARKER REL PORT ABSTRACT [IFNAME...]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  processes(argv[1]);
  files(argv[2], argv[3]);
  volume(argv[2]);
  sockets(argv[4], argv[5]);
  interfaces(argc, argv, 6);
  printf("done\n");
  return 0;
}
