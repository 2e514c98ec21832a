// A bench child in C: holds N long-poll requests on keep-alive sockets and records, on the machine's
// monotonic clock (the clock of Node's process.hrtime), when the first byte of each answer arrives.
// It stands for N sidecars on N pods: each reads one answer, so the benchmark should not pay a
// JavaScript client's per-answer cost (20-40 us each, 1,000 of them in a row on one core).
//
//   longpoll_client HOST PORT PATH COUNT
// Commands on stdin, one a line; answers on stdout, one a line:
//   wait VERSION  -> "sent" once every request is written, "answered 200=N 304=N ..." once all are read
//   report        -> "times T1 T2 ..." (ns, CLOCK_MONOTONIC, 0 for a socket that got nothing)
//   exit
// Start-up prints "open COUNT" once every socket is connected; errors go to stderr with exit 1.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int fd;
  char *buf;
  size_t len, cap;
  long long got_at;
  int done;
} conn_t;

static conn_t *conns;
static int count, answered, expected;
static int statuses[600];

static void die(const char *what) {
  fprintf(stderr, "longpoll_client: %s: %s\n", what, strerror(errno));
  exit(1);
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      die("write");
    }
    p += w;
    n -= (size_t)w;
  }
}

// A whole answer is in c->buf once its head and content-length bytes of body are.
static int complete(conn_t *c) {
  char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t head = (size_t)(end - c->buf) + 4;
  size_t body = 0;
  for (char *p = c->buf; p < end; p++) {
    if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
      body = strtoul(p + 15, NULL, 10);
      break;
    }
  }
  if (c->len < head + body) return 0;
  int status = c->len > 12 ? atoi(c->buf + 9) : 0;
  if (status < 0 || status >= 600) status = 0;
  statuses[status]++;
  return 1;
}

static void on_readable(conn_t *c) {
  for (;;) {
    if (c->cap - c->len < 4096) {
      c->cap *= 2;
      c->buf = realloc(c->buf, c->cap);
      if (!c->buf) die("realloc");
    }
    ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (r > 0) {
      if (c->got_at == 0) c->got_at = now_ns();
      c->len += (size_t)r;
      continue;
    }
    if (r == 0) {
      fprintf(stderr, "longpoll_client: the server closed a connection\n");
      exit(1);
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) break;
    die("read");
  }
  if (!c->done && complete(c)) {
    c->done = 1;
    if (++answered == expected) {
      char line[256];
      int n = snprintf(line, sizeof line, "answered");
      for (int s = 0; s < 600; s++)
        if (statuses[s]) n += snprintf(line + n, sizeof line - (size_t)n, " %d=%d", s, statuses[s]);
      line[n++] = '\n';
      write_all(1, line, (size_t)n);
    }
  }
}

static void start_wait(const char *host, const char *path, const char *version) {
  char req[2048];
  int n = snprintf(req, sizeof req, "GET %s?version=%s&wait=60s HTTP/1.1\r\nhost: %s\r\n\r\n", path, version, host);
  memset(statuses, 0, sizeof statuses);
  answered = 0;
  expected = count;
  for (int i = 0; i < count; i++) {
    conns[i].len = 0;
    conns[i].got_at = 0;
    conns[i].done = 0;
    write_all(conns[i].fd, req, (size_t)n);
  }
  write_all(1, "sent\n", 5);
}

static void report(void) {
  size_t cap = (size_t)count * 24 + 16, n = 0;
  char *out = malloc(cap);
  if (!out) die("malloc");
  n += (size_t)snprintf(out, cap, "times");
  for (int i = 0; i < count; i++) n += (size_t)snprintf(out + n, cap - n, " %lld", conns[i].got_at);
  out[n++] = '\n';
  write_all(1, out, n);
  free(out);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: longpoll_client HOST PORT PATH COUNT\n");
    return 2;
  }
  const char *host = argv[1], *path = argv[3];
  count = atoi(argv[4]);
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2])) };
  if (count < 1 || inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "longpoll_client: HOST must be an IPv4 address and COUNT at least 1\n");
    return 2;
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)count + 64) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  conns = calloc((size_t)count, sizeof *conns);
  if (!conns) die("calloc");
  for (int i = 0; i < count; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) die("fcntl");
    conns[i] = (conn_t){ .fd = fd, .buf = malloc(8192), .cap = 8192 };
    if (!conns[i].buf) die("malloc");
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)i + 1 };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
  }
  struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };
  if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl stdin");
  char line[64];
  int n = snprintf(line, sizeof line, "open %d\n", count);
  write_all(1, line, (size_t)n);

  char cmd[4096];
  size_t cmd_len = 0;
  struct epoll_event events[1024];
  for (;;) {
    int k = epoll_wait(ep, events, 1024, -1);
    if (k < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int e = 0; e < k; e++) {
      unsigned id = events[e].data.u32;
      if (id > 0) {
        on_readable(&conns[id - 1]);
        continue;
      }
      ssize_t r = read(0, cmd + cmd_len, sizeof cmd - 1 - cmd_len);
      if (r <= 0) return 0;  // the parent went away
      cmd_len += (size_t)r;
      char *nl;
      while ((nl = memchr(cmd, '\n', cmd_len)) != NULL) {
        *nl = 0;
        if (strncmp(cmd, "wait ", 5) == 0) start_wait(host, path, cmd + 5);
        else if (strcmp(cmd, "report") == 0) report();
        else if (strcmp(cmd, "exit") == 0) return 0;
        else fprintf(stderr, "longpoll_client: unknown command %s\n", cmd);
        size_t used = (size_t)(nl - cmd) + 1;
        memmove(cmd, nl + 1, cmd_len - used);
        cmd_len -= used;
      }
    }
  }
}
