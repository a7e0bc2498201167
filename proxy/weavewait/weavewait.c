/*
 * weavewait: the entrypoint weave puts in front of a container's command (/w/w).
 *
 * It waits until the interface `ethwe` is up, running and has an IPv4 address (the weave daemon moves it
 * into the container right after Docker starts it), then execs its arguments with the same
 * environment, looking argv[1] up on PATH. Unlike Weave's, it gives up after a timeout and says
 * why, so a container started without the proxy fails loudly instead of hanging forever.
 *
 * Environment:
 *   WEAVEWAIT_TIMEOUT  seconds to wait (default 30, decimals allowed; 0 waits forever)
 *
 * Exit codes (only when the command is not exec'd):
 *   2    usage: no command given, or WEAVEWAIT_TIMEOUT is not a number
 *   3    ethwe was not up and running with an address before the timeout
 *   126  the command was found but could not be executed
 *   127  the command was not found
 */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IFACE "ethwe"
/*
 * 1 ms between checks for the first seconds: the daemon attaches within milliseconds of Docker's
 * start, and every ms slept after that is added to `docker run`. Two ioctls per check cost a
 * few microseconds. After FAST_S (a slow attach, or no daemon) back off to 10 ms.
 */
#define FAST_POLL_NS (1 * 1000 * 1000)
#define SLOW_POLL_NS (10 * 1000 * 1000)
#define FAST_S 3.0

static double monotonic_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 1 when IFACE is up and running and carries an IPv4 address, else 0. */
static int iface_ready(int fd) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, IFACE, IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) return 0; /* not there yet */
  /* IFF_RUNNING too: the kernel marks a veth running a moment after it comes up (link watch);
     before that the bridge drops its frames. */
  if ((ifr.ifr_flags & (IFF_UP | IFF_RUNNING)) != (IFF_UP | IFF_RUNNING)) return 0;
  memset(&ifr.ifr_addr, 0, sizeof ifr.ifr_addr);
  ifr.ifr_addr.sa_family = AF_INET;
  if (ioctl(fd, SIOCGIFADDR, &ifr) < 0) return 0; /* EADDRNOTAVAIL until an address is added */
  return 1;
}

static int parse_timeout(double *out) {
  const char *s = getenv("WEAVEWAIT_TIMEOUT");
  if (s == NULL || *s == '\0') { *out = 30; return 0; }
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || *end != '\0' || v < 0 || v != v) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "weavewait: No command specified (usage: /w/w COMMAND [ARG...])\n");
    return 2;
  }
  double timeout;
  if (parse_timeout(&timeout) < 0) {
    fprintf(stderr, "weavewait: WEAVEWAIT_TIMEOUT=%s is not a number of seconds\n", getenv("WEAVEWAIT_TIMEOUT"));
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fprintf(stderr, "weavewait: cannot open a socket to query interfaces: %s\n", strerror(errno));
    return 3;
  }
  double started = monotonic_s();
  double deadline = started + timeout;
  while (!iface_ready(fd)) {
    if (timeout > 0 && monotonic_s() >= deadline) {
      fprintf(stderr,
              "weavewait: interface " IFACE " was not up and running with an address after %g s; "
              "was this container started through the weave proxy with weave running? "
              "(set WEAVEWAIT_TIMEOUT=SECONDS to wait longer, 0 to wait forever)\n", timeout);
      return 3;
    }
    struct timespec step = {0, monotonic_s() - started < FAST_S ? FAST_POLL_NS : SLOW_POLL_NS};
    nanosleep(&step, NULL);
  }
  close(fd);
  execvp(argv[1], argv + 1);
  int err = errno;
  fprintf(stderr, "weavewait: cannot run %s: %s\n", argv[1], strerror(err));
  return err == ENOENT ? 127 : 126;
}
