/*
 * weave-net: the CNI plugin's executable (installed by `weave setup-cni`).
 *
 * Why C: a runtime starts the plugin four times per pod (VERSION and ADD at start, VERSION and
 * DEL at the end; libcni checks versions before each list), and a node process costs 40 ms on a
 * quiet machine and several hundred under load, most of a pod's network cost. This front does no
 * CNI logic of its own beyond VERSION: it forwards the CNI_* variables and the conf to the router
 * (POST /cni/run on the socket the conf names), which runs the same plugin code (cni/plugin.ts)
 * in its own process and answers with the plugin's stdout and exit code.
 *
 * Anything unusual (a conf that is not a plain JSON object, a router that cannot be reached or is
 * too old for /cni/run, an unknown command) goes to the node plugin beside it
 * (weave-net.d/node-plugin) with the same stdin and environment, so every error keeps the node
 * plugin's exact wording. One exception: a router that accepts no connection within the 5 s the
 * spec's caller allows is reported from here (the node plugin would wait as long again).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONF (16 << 20)
#define MAX_ANSWER (4 << 20)
#define CONNECT_TIMEOUT_MS 5000
#define ANSWER_TIMEOUT_MS 90000

static const char *const VERSIONS[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0"};
static const char *const FORWARDED[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"};

struct buf {
  char *p;
  size_t n, cap;
};

static void put(struct buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) exit(70);
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* A JSON string literal of s (control characters escaped, UTF-8 passed through). */
static void put_json_string(struct buf *b, const char *s, size_t n) {
  puts_(b, "\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      put(b, e, 2);
    } else if (c < 0x20) {
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", c);
      puts_(b, e);
    } else {
      put(b, (const char *)&s[i], 1);
    }
  }
  puts_(b, "\"");
}

/* ---- just enough JSON: the string value of a top-level key of an object ---- */

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* Past a string literal starting at p (on its quote); NULL when unterminated. Sets *plain when it has no escape. */
static const char *skip_string(const char *p, const char *end, int *plain) {
  if (plain) *plain = 1;
  for (p++; p < end; p++) {
    if (*p == '\\') {
      if (plain) *plain = 0;
      p++;
    } else if (*p == '"') {
      return p + 1;
    } else if ((unsigned char)*p < 0x20) {
      return NULL;
    }
  }
  return NULL;
}

/* Past one value (any kind); NULL on malformed input. Scalars are taken loosely: the node plugin
 * rejects what JSON.parse rejects, and a conf that is not JSON never reaches the router from here. */
static const char *skip_value(const char *p, const char *end) {
  int depth = 0;
  p = skip_ws(p, end);
  do {
    if (p >= end) return NULL;
    if (*p == '"') {
      p = skip_string(p, end, NULL);
      if (!p) return NULL;
    } else if (*p == '{' || *p == '[') {
      depth++;
      p++;
    } else if (*p == '}' || *p == ']') {
      if (--depth < 0) return NULL;
      p++;
    } else if (depth > 0) {
      p++;
    } else {
      while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') p++;
    }
  } while (depth > 0);
  return p;
}

enum { J_BAD = -1, J_ABSENT = 0, J_STRING = 1, J_OTHER = 2 };

/*
 * Find top-level `key` in the object in [s, end): J_STRING with *val/*len on a plain string (no
 * escapes), J_OTHER when present as anything else (or an escaped string), J_ABSENT, or J_BAD when
 * the text is not one JSON object as far as this scan can tell.
 */
static int top_level(const char *s, const char *end, const char *key, const char **val, size_t *len) {
  int found = J_ABSENT;
  const char *p = skip_ws(s, end);
  if (p >= end || *p != '{') return J_BAD;
  p = skip_ws(p + 1, end);
  if (p < end && *p == '}') return skip_ws(p + 1, end) == end ? J_ABSENT : J_BAD;
  for (;;) {
    if (p >= end || *p != '"') return J_BAD;
    int plain;
    const char *k = p + 1;
    p = skip_string(p, end, &plain);
    if (!p) return J_BAD;
    size_t klen = (size_t)(p - 1 - k);
    int match = plain && klen == strlen(key) && memcmp(k, key, klen) == 0;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return J_BAD;
    p = skip_ws(p + 1, end);
    const char *v = p;
    p = skip_value(p, end);
    if (!p) return J_BAD;
    if (match) {
      int vplain = 0;
      if (*v == '"' && skip_string(v, end, &vplain) == p && vplain) {
        *val = v + 1;
        *len = (size_t)(p - 1 - (v + 1));
        found = J_STRING;
      } else {
        found = J_OTHER;
      }
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',') { p = skip_ws(p + 1, end); continue; }
    if (p < end && *p == '}') return skip_ws(p + 1, end) == end ? found : J_BAD;
    return J_BAD;
  }
}

/* ---- the node plugin, for everything this front does not handle ---- */

static char self_dir[PATH_MAX];

static void fallback(const char *conf, size_t n) {
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/weave-net.d/node-plugin", self_dir);
  int fds[2];
  if (pipe(fds) == 0) {
    // The conf goes into a pipe that becomes the node plugin's stdin. More than the pipe holds
    // is written by a child while the node plugin reads (it would block here before the exec).
    int writer = n > 65536 && fcntl(fds[1], F_SETPIPE_SZ, (int)n) < (int)n;
    if (!writer || fork() == 0) {
      if (writer) close(fds[0]); // a reader that quits early then stops this writer (EPIPE), not blocks it
      size_t off = 0;
      while (off < n) {
        ssize_t w = write(fds[1], conf + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
      }
      if (writer) _exit(0);
    }
    close(fds[1]);
    dup2(fds[0], 0);
    close(fds[0]);
  }
  char *argv[] = {path, NULL};
  execv(path, argv);
  printf("{\"cniVersion\":\"1.0.0\",\"code\":5,\"msg\":\"weave-net: cannot run %s: %s\"}\n", path, strerror(errno));
  exit(1);
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Wait for `events` on fd until the absolute deadline; 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd pf = {.fd = fd, .events = events};
    int r = poll(&pf, 1, (int)(left > INT_MAX ? INT_MAX : left));
    if (r > 0) return 1;
    if (r == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

static const char *supported(const char *v, size_t n) {
  for (size_t i = 0; i < sizeof VERSIONS / sizeof *VERSIONS; i++) {
    if (v && strlen(VERSIONS[i]) == n && memcmp(VERSIONS[i], v, n) == 0) return VERSIONS[i];
  }
  return NULL;
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  ssize_t sl = readlink("/proc/self/exe", self_dir, sizeof self_dir - 1);
  if (sl <= 0) strcpy(self_dir, "/opt/cni/bin/weave-net");
  else self_dir[sl] = 0;
  char *slash = strrchr(self_dir, '/');
  if (slash) *slash = 0;

  struct buf conf = {0};
  char chunk[65536];
  for (;;) {
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    put(&conf, chunk, (size_t)r);
    if (conf.n > MAX_CONF) {
      printf("{\"cniVersion\":\"1.0.0\",\"code\":6,\"msg\":\"weave-net: the network configuration on stdin is larger than %d MiB\"}\n", MAX_CONF >> 20);
      return 1;
    }
  }
  if (!conf.p) puts_(&conf, "");
  const char *end = conf.p + conf.n;

  const char *cmd = getenv("CNI_COMMAND");
  const char *v = NULL;
  size_t vlen = 0;
  int vk = top_level(conf.p, end, "cniVersion", &v, &vlen);
  const char *version = vk == J_STRING ? supported(v, vlen) : NULL;
  if (cmd && strcmp(cmd, "VERSION") == 0 && vk != J_BAD) {
    // As formatVersionInfo (cni/spec.ts): the conf's version when we speak it, else our newest.
    printf("{\"cniVersion\":\"%s\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\"]}\n", version ? version : "1.0.0");
    return 0;
  }
  if (!cmd || (strcmp(cmd, "ADD") && strcmp(cmd, "DEL") && strcmp(cmd, "CHECK")) || vk == J_BAD || !version) fallback(conf.p, conf.n);

  const char *s = NULL;
  size_t slen = 0;
  char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
  int sk = top_level(conf.p, end, "socket", &s, &slen);
  if (sk == J_STRING && slen > 0 && slen < sizeof sock && s[0] == '/') {
    memcpy(sock, s, slen);
    sock[slen] = 0;
  } else if (sk == J_ABSENT) {
    const char *run = getenv("WEAVE_RUN_DIR");
    if (snprintf(sock, sizeof sock, "%s/api.sock", run && *run ? run : "/run/weave") >= (int)sizeof sock) fallback(conf.p, conf.n);
  } else {
    fallback(conf.p, conf.n); // the node plugin says what is wrong with it
  }

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) fallback(conf.p, conf.n);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strcpy(addr.sun_path, sock);
  long long t0 = now_ms();
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) fallback(conf.p, conf.n); // not running: the node plugin names the cause
    int w = wait_fd(fd, POLLOUT, t0 + CONNECT_TIMEOUT_MS);
    int soerr = 0;
    socklen_t l = sizeof soerr;
    if (w == 0) {
      struct buf e = {0};
      puts_(&e, "weave router not running? cannot connect to ");
      puts_(&e, sock);
      puts_(&e, ": no answer to connect within 5 s");
      struct buf out = {0};
      puts_(&out, "{\"cniVersion\":\"");
      puts_(&out, version);
      puts_(&out, "\",\"code\":11,\"msg\":");
      put_json_string(&out, e.p, e.n);
      puts_(&out, ",\"details\":\"start it with \\\"weave launch\\\"; the conf's \\\"socket\\\" names where it listens\"}\n");
      fputs(out.p, stdout);
      return 1;
    }
    if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) != 0 || soerr != 0) fallback(conf.p, conf.n);
  }

  struct buf body = {0};
  puts_(&body, "{\"env\":{");
  int first = 1;
  for (size_t i = 0; i < sizeof FORWARDED / sizeof *FORWARDED; i++) {
    const char *val = getenv(FORWARDED[i]);
    if (!val) continue;
    if (!first) puts_(&body, ",");
    first = 0;
    put_json_string(&body, FORWARDED[i], strlen(FORWARDED[i]));
    puts_(&body, ":");
    put_json_string(&body, val, strlen(val));
  }
  puts_(&body, "},\"stdin\":");
  put_json_string(&body, conf.p, conf.n);
  puts_(&body, "}");
  struct buf req = {0};
  char head[256];
  snprintf(head, sizeof head,
           "POST /cni/run HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
           body.n);
  puts_(&req, head);
  put(&req, body.p, body.n);

  long long deadline = now_ms() + ANSWER_TIMEOUT_MS;
  size_t off = 0;
  while (off < req.n) {
    ssize_t w = send(fd, req.p + off, req.n - off, MSG_NOSIGNAL);
    if (w > 0) { off += (size_t)w; continue; }
    if (w < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLOUT, deadline) == 1) continue;
    fallback(conf.p, conf.n); // nothing was answered: the node plugin asks again and says what fails
  }
  // Not shut down for writing: node's HTTP server drops a half-closed request unanswered.
  struct buf ans = {0};
  for (;;) {
    ssize_t r = recv(fd, chunk, sizeof chunk, 0);
    if (r > 0) {
      put(&ans, chunk, (size_t)r);
      if (ans.n > MAX_ANSWER) break;
      continue;
    }
    if (r == 0) break;
    if ((errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLIN, deadline) == 1) continue;
    break;
  }
  close(fd);

  // "HTTP/1.1 200 ...", headers, body. A router too old for /cni/run (404) or refusing the
  // request goes to the node plugin, which uses the classic API; once a request has gone through,
  // a missing or broken answer is reported (asking again could repeat an ADD).
  char *sep = ans.p ? strstr(ans.p, "\r\n\r\n") : NULL;
  if (ans.n >= 12 && memcmp(ans.p, "HTTP/1.", 7) == 0 && ans.p[8] == ' ' && memcmp(ans.p + 9, "200", 3) != 0) fallback(conf.p, conf.n);
  long clen = -1, code = -1;
  const char *data = NULL;
  if (sep) {
    *sep = 0;
    data = sep + 4;
    for (char *line = strstr(ans.p, "\r\n"); line; line = strstr(line, "\r\n")) {
      line += 2;
      if (strncasecmp(line, "content-length:", 15) == 0) clen = strtol(line + 15, NULL, 10);
      if (strncasecmp(line, "x-cni-exit-code:", 16) == 0) code = strtol(line + 16, NULL, 10);
    }
  }
  if (!sep || code < 0 || code > 255 || clen < 0 || (size_t)clen > ans.n - (size_t)(data - ans.p)) {
    struct buf e = {0}, out = {0};
    puts_(&e, "no complete answer from the router at ");
    puts_(&e, sock);
    puts_(&e, now_ms() >= deadline ? " within 90 s" : " (connection closed early)");
    puts_(&out, "{\"cniVersion\":\"");
    puts_(&out, version);
    puts_(&out, "\",\"code\":5,\"msg\":");
    put_json_string(&out, e.p, e.n);
    puts_(&out, "}\n");
    fputs(out.p, stdout);
    return 1;
  }
  if (clen > 0 && !(clen == 1 && data[0] == '\n')) fwrite(data, 1, (size_t)clen, stdout);
  return (int)code;
}
