/* Terminal modes on a host terminal (the harness runs this on a pty, under script(1)):
 * tcgetattr, raw mode set and read back, the mode restored with each of tcsetattr's
 * TCSANOW, TCSADRAIN and TCSAFLUSH (TCSETS, TCSETSW, TCSETSF), and a bad pointer.
 * Everything is printed after the mode is restored, so raw mode cannot change the output. */
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "nv.h"

static char out[1024];
static size_t used;

#define say(...) (used += snprintf(out + used, sizeof out - used, __VA_ARGS__))

static void show(const char *what, const struct termios *t) {
  say("%s: icanon %d echo %d isig %d opost %d vmin %d\n", what, !!(t->c_lflag & ICANON),
      !!(t->c_lflag & ECHO), !!(t->c_lflag & ISIG), !!(t->c_oflag & OPOST), t->c_cc[VMIN]);
}

int main(void) {
  struct termios saved, raw, now;
  if (!isatty(0)) {
    printf("stdin is not a terminal\n");
    return 1;
  }
  if (tcgetattr(0, &saved) != 0) {
    printf("tcgetattr: %s\n", errname(errno));
    return 1;
  }
  show("at start", &saved);
  raw = saved;
  cfmakeraw(&raw);
  say("raw (TCSANOW): %s\n", errname(tcsetattr(0, TCSANOW, &raw) ? errno : 0));
  tcgetattr(0, &now);
  show("read back", &now);
  say("restore (TCSADRAIN): %s\n", errname(tcsetattr(0, TCSADRAIN, &saved) ? errno : 0));
  tcgetattr(0, &now);
  show("read back", &now);
  say("again (TCSAFLUSH): %s\n", errname(tcsetattr(0, TCSAFLUSH, &saved) ? errno : 0));
  say("bad pointer: %s\n", errname(ioctl(0, TCSETS, (void *)8) ? errno : 0));
  tcgetattr(0, &now);
  show("at end", &now);
  fputs(out, stdout);
  return 0;
}
