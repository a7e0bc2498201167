/*
 * nsExec(netns|null, argv, input, fn(code, output) [, timeoutMs]): a command inside a network
 * namespace, without forking node.
 *
 * Why: node's child_process forks the whole process (libuv uses fork): with tens of MB mapped that
 * costs 5-15 ms, during which the event loop stands still, on every attach. vfork shares the
 * parent's memory until exec, so its cost does not grow with the daemon. The child enters the
 * namespace itself (setns), so no nsenter either. Exit is seen through a pidfd polled on node's
 * loop; libuv reaps only the pids it spawned, so this child is ours to reap.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include "common.h"
#include "netlink.h"
#include "units.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Output kept for the callback (the rest is read and dropped, so the child never blocks on a
 * full pipe); exit code reported for a child killed at its deadline (as timeout(1) does). */
#define NSEXEC_OUT_CAP 16384
#define NSEXEC_TIMED_OUT 124

typedef struct {
  uv_poll_t exit_poll;    /* the child's pidfd: readable once it exited */
  uv_poll_t out_poll;     /* its stdout+stderr pipe, read while it runs */
  uv_timer_t timer;       /* its deadline */
  int pidfd, outfd, out_open, closing, timed_out;
  uint64_t timeout_ms;
  pid_t pid;
  size_t out_len, dropped;
  char out[NSEXEC_OUT_CAP];
  napi_env env;
  napi_ref cb;
  napi_async_context actx;
} nschild_t;

/* All three handles share the struct: it is freed when the last of them has closed. */
static void nschild_closed(uv_handle_t *h) {
  nschild_t *c = h->data;
  if (--c->closing == 0) free(c);
}

/* Reads what the pipe holds now; at EOF stops watching it. */
static void nschild_drain(nschild_t *c) {
  char scratch[4096];
  while (c->out_open) {
    char *to = c->out_len < sizeof c->out ? c->out + c->out_len : scratch;
    size_t room = c->out_len < sizeof c->out ? sizeof c->out - c->out_len : sizeof scratch;
    ssize_t n = read(c->outfd, to, room);
    if (n > 0) {
      if (to == scratch) c->dropped += (size_t)n; else c->out_len += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) { uv_poll_stop(&c->out_poll); c->out_open = 0; }
    break;
  }
}

static void nschild_output(uv_poll_t *h, int status, int events) {
  (void)status; (void)events;
  nschild_drain(h->data);
}

/* The deadline: kill it; its exit then arrives through the pidfd as usual. */
static void nschild_deadline(uv_timer_t *t) {
  nschild_t *c = t->data;
  c->timed_out = 1;
  if (syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0) < 0) kill(c->pid, SIGKILL);
}

static void nschild_exited(uv_poll_t *h, int status, int events) {
  (void)status; (void)events;
  nschild_t *c = h->data;
  int st = 0;
  while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {}
  nschild_drain(c); /* what it wrote last (a grandchild holding the pipe gets no more waiting) */
  uv_poll_stop(&c->exit_poll);
  uv_poll_stop(&c->out_poll);
  uv_timer_stop(&c->timer);
  char note[128];
  int nl = 0;
  if (c->timed_out) nl = snprintf(note, sizeof note, "\n(killed: no exit within %llu ms)", (unsigned long long)c->timeout_ms);
  else if (c->dropped) nl = snprintf(note, sizeof note, "\n(%zu more bytes of output dropped)", c->dropped);
  size_t keep = c->out_len + (size_t)nl > sizeof c->out ? sizeof c->out - (size_t)nl : c->out_len;
  memcpy(c->out + keep, note, (size_t)nl);
  size_t len = keep + (size_t)nl;
  napi_env env = c->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value cb, recv, argv[2], res;
    napi_get_reference_value(env, c->cb, &cb);
    napi_get_global(env, &recv);
    int code = c->timed_out ? NSEXEC_TIMED_OUT : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    napi_create_int32(env, code, &argv[0]);
    napi_create_string_utf8(env, c->out, len, &argv[1]);
    if (napi_make_callback(env, c->actx, recv, cb, 2, argv, &res) == napi_pending_exception) {
      napi_value e;
      napi_get_and_clear_last_exception(env, &e);
      napi_fatal_exception(env, e);
    }
    napi_close_handle_scope(env, scope);
  }
  napi_delete_reference(env, c->cb);
  napi_async_destroy(env, c->actx);
  c->closing = 3;
  uv_close((uv_handle_t *)&c->exit_poll, nschild_closed);
  uv_close((uv_handle_t *)&c->out_poll, nschild_closed);
  uv_close((uv_handle_t *)&c->timer, nschild_closed);
  close(c->outfd);
  close(c->pidfd);
}

/*
 * Starts args (argv[0] on PATH) with stdin from `in0`, stdout and stderr to `out1`, inside the
 * namespace `nsfd` (-1: ours): its pid, or -1 with errno.
 */
static pid_t spawn_child(int nsfd, int in0, int out1, char **args) {
  /* No signal handler may run in the child while it borrows our memory (as posix_spawn does):
     all blocked across vfork; the child resets handled signals to default, then unblocks. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = vfork();
  if (pid == 0) {
    /* Only system calls here, and never a return: we run on the parent's memory until exec. */
    for (int sig = 1; sig < NSIG; sig++) {
      struct sigaction sa;
      if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) < 0) continue;
      if (sa.sa_handler != SIG_IGN && sa.sa_handler != SIG_DFL) { sa.sa_handler = SIG_DFL; sa.sa_flags = 0; sigaction(sig, &sa, NULL); }
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0) _exit(126);
    if (dup2(in0, 0) < 0 || dup2(out1, 1) < 0 || dup2(out1, 2) < 0) _exit(126);
    execvp(args[0], args);
    _exit(127);
  }
  int e = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return pid;
}

/* Watches child `pid` (its output on `outfd`) on node's loop until it exits, then calls `fn`. */
static napi_value watch_child(napi_env env, pid_t pid, int outfd, napi_value fn, uint64_t timeout_ms) {
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    int e = errno;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    close(outfd);
    return wn_throw_errno(env, e, "nsExec: pidfd_open");
  }
  fcntl(outfd, F_SETFL, O_NONBLOCK);
  nschild_t *c = calloc(1, sizeof *c);
  uv_loop_t *loop;
  napi_value name, resource;
  if (!c || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &c->exit_poll, pidfd) < 0) {
    /* Cannot watch it: kill and reap it here rather than leave it unwatched. */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    free(c); close(pidfd); close(outfd);
    return wn_throw_errno(env, ENOMEM, "nsExec: watching the child");
  }
  /* Both can only fail on a bad fd or loop: the fds and loop are good by now. */
  uv_poll_init(loop, &c->out_poll, outfd);
  uv_timer_init(loop, &c->timer);
  c->exit_poll.data = c->out_poll.data = c->timer.data = c;
  c->pid = pid;
  c->pidfd = pidfd;
  c->outfd = outfd;
  c->out_open = 1;
  c->timeout_ms = timeout_ms;
  c->env = env;
  napi_create_reference(env, fn, 1, &c->cb);
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "weave_native.nsExec", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &c->actx);
  uv_poll_start(&c->out_poll, UV_READABLE, nschild_output);
  uv_poll_start(&c->exit_poll, UV_READABLE, nschild_exited);
  uv_timer_start(&c->timer, nschild_deadline, timeout_ms, 0);
  return wn_undefined(env);
}

/*
 * nsExec(netns|null, argv[], input, fn(exitCode, stderrAndStdout) [, timeoutMs = 30000]); argv[0]
 * is looked up on PATH. Its output is read while it runs (a child writing more than a pipe holds
 * never blocks; 16 KiB are kept); past timeoutMs it is SIGKILLed and fn gets exit code 124.
 */
static napi_value ns_exec(napi_env env, napi_callback_info info) {
  ARGS(5);
  char ns[512];
  int has_ns = argc >= 1 && !wn_is_nullish(env, argv[0]);
  bool is_array = false;
  napi_valuetype t;
  if (argc < 4 || (has_ns && !wn_get_string(env, argv[0], ns, sizeof ns)) || napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_typeof(env, argv[3], &t) != napi_ok || t != napi_function) return wn_throw_type(env, "nsExec(netns|null, argv, input, fn)");
  uint32_t nargs = 0;
  napi_get_array_length(env, argv[1], &nargs);
  if (nargs == 0 || nargs > 64) return wn_throw_type(env, "nsExec: 1 to 64 arguments");
  char *args[65] = { 0 };
  char store[8192];
  size_t used = 0;
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value v;
    size_t len;
    napi_get_element(env, argv[1], i, &v);
    if (napi_get_value_string_utf8(env, v, store + used, sizeof store - used, &len) != napi_ok || used + len + 1 >= sizeof store)
      return wn_throw_type(env, "nsExec: arguments must be strings (8 KiB in all)");
    args[i] = store + used;
    used += len + 1;
  }
  static char input[65536];
  size_t in_len = 0;
  if (napi_get_value_string_utf8(env, argv[2], input, sizeof input, &in_len) != napi_ok || in_len >= sizeof input - 1)
    return wn_throw_type(env, "nsExec: input must be a string under 64 KiB");
  double tmo = 30000;
  if (argc >= 5 && !wn_is_nullish(env, argv[4]) && (napi_get_value_double(env, argv[4], &tmo) != napi_ok || !(tmo >= 1 && tmo <= 86400000)))
    return wn_throw_type(env, "nsExec: timeoutMs must be 1 to 86400000");
  uint64_t timeout_ms = (uint64_t)tmo;

  int nsfd = -1, in[2] = { -1, -1 }, out[2] = { -1, -1 };
  if (has_ns && (nsfd = open(ns, O_RDONLY | O_CLOEXEC)) < 0) return wn_throw_errno(env, errno, ns);
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
    int e = errno;
    if (nsfd >= 0) close(nsfd);
    for (int i = 0; i < 2; i++) { if (in[i] >= 0) close(in[i]); if (out[i] >= 0) close(out[i]); }
    return wn_throw_errno(env, e, "nsExec: pipe");
  }
  /* The input fits the pipe (64 KiB), so writing it before the child runs cannot block. */
  ssize_t w = write(in[1], input, in_len);
  close(in[1]);
  if (w != (ssize_t)in_len) { int e = errno; close(in[0]); close(out[0]); close(out[1]); if (nsfd >= 0) close(nsfd); return wn_throw_errno(env, e, "nsExec: writing input"); }
  pid_t pid = spawn_child(nsfd, in[0], out[1], args);
  int e = errno;
  close(in[0]);
  close(out[1]);
  if (nsfd >= 0) close(nsfd);
  if (pid < 0) { close(out[0]); return wn_throw_errno(env, e, "nsExec: vfork"); }
  return watch_child(env, pid, out[0], argv[3], timeout_ms);
}

void weave_register_ns_exec(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "nsExec", NULL, ns_exec, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
