// The client of the circuit-refusal scenario, in C (bench/lib/burstClientChild.ts is the Node one):
// holds HOLD slow requests open (filling the proxy's limit), then writes BURST requests at once over
// warm keep-alive connections, one write each in a tight loop, and times each from its own write to
// the first byte of its answer on the machine's monotonic clock. A JavaScript client handles the 40
// answers one after another on its event loop, so its last timing carries the client's own work for
// the 39 before it; here each answer's time is taken as epoll hands it over.
//
//   burst_client HOST PORT HOST_HEADER HOLD BURST ROUNDS
// Runs ROUNDS + 1 bursts (the first is the cold one, reported apart) and prints one JSON line:
//   {"cold":{"times":[ms...],"statuses":[...]},"rounds":[{"times":[...],"statuses":[...]}, ...]}
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in addr;
static char req_warm[512], req_hold[512];
static int req_warm_len, req_hold_len;

static void die(const char *what) {
  fprintf(stderr, "burst_client: %s: %s\n", what, strerror(errno));
  exit(1);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int open_conn(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void write_all(int fd, const char *p, int n) {
  while (n > 0) {
    ssize_t w = write(fd, p, (size_t)n);
    if (w < 0) {
      if (errno == EINTR) continue;
      die("write");
    }
    p += w;
    n -= (int)w;
  }
}

// Reads one whole answer (head and content-length body) on a blocking socket.
static void read_answer(int fd) {
  char buf[8192];
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
    if (r <= 0) die("read warm answer");
    len += (size_t)r;
    buf[len] = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (!end) continue;
    size_t body = 0;
    char *cl = strcasestr(buf, "content-length:");
    if (cl && cl < end) body = strtoul(cl + 15, NULL, 10);
    if (len >= (size_t)(end - buf) + 4 + body) return;
  }
}

static void burst(int hold, int n, double *times, int *statuses) {
  int *conns = malloc(sizeof(int) * (size_t)n), *holders = malloc(sizeof(int) * (size_t)hold);
  double *sent = malloc(sizeof(double) * (size_t)n);
  // Warm: every burst connection has carried one request, so the proxy has it parsed and idle.
  for (int i = 0; i < n; i++) {
    conns[i] = open_conn();
    write_all(conns[i], req_warm, req_warm_len);
    read_answer(conns[i]);
  }
  for (int i = 0; i < hold; i++) {
    holders[i] = open_conn();
    write_all(holders[i], req_hold, req_hold_len);
  }
  usleep(300000);  // the holders reach the backend
  int ep = epoll_create1(0);
  for (int i = 0; i < n; i++) {
    fcntl(conns[i], F_SETFL, O_NONBLOCK);
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)i };
    epoll_ctl(ep, EPOLL_CTL_ADD, conns[i], &ev);
    times[i] = -1;
  }
  for (int i = 0; i < n; i++) {
    sent[i] = now_ms();
    write_all(conns[i], req_hold, req_hold_len);
  }
  int left = n;
  struct epoll_event events[256];
  // Busy-polls (epoll_wait with no timeout) until every answer is in: a client that sleeps in
  // epoll_wait lets its CPU go idle, and waking an idle virtual CPU can take milliseconds, which
  // would then be timed as the proxy's.
  double deadline = now_ms() + 10000;
  while (left > 0) {
    int k = epoll_wait(ep, events, 256, 0);
    double t = now_ms();
    if (k == 0 && t > deadline) {
      fprintf(stderr, "burst_client: %d answers missing after 10 s\n", left);
      exit(1);
    }
    for (int e = 0; e < k; e++) {
      unsigned i = events[e].data.u32;
      char buf[4096];
      ssize_t r = read(conns[i], buf, sizeof buf);
      if (times[i] >= 0) continue;
      times[i] = t - sent[i];
      statuses[i] = r >= 12 ? atoi(buf + 9) : 0;
      epoll_ctl(ep, EPOLL_CTL_DEL, conns[i], NULL);
      left--;
    }
  }
  close(ep);
  for (int i = 0; i < n; i++) close(conns[i]);
  for (int i = 0; i < hold; i++) close(holders[i]);
  usleep(50000);  // the proxy sees the holders go and frees their slots
  free(conns);
  free(holders);
  free(sent);
}

static void print_round(const double *times, const int *statuses, int n) {
  printf("{\"times\":[");
  for (int i = 0; i < n; i++) printf("%s%.4f", i ? "," : "", times[i]);
  printf("],\"statuses\":[");
  for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", statuses[i]);
  printf("]}");
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: burst_client HOST PORT HOST_HEADER HOLD BURST ROUNDS\n");
    return 2;
  }
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(argv[2]));
  int hold = atoi(argv[4]), n = atoi(argv[5]), rounds = atoi(argv[6]);
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 || hold < 0 || n < 1 || rounds < 0) {
    fprintf(stderr, "burst_client: HOST must be an IPv4 address, HOLD >= 0, BURST >= 1, ROUNDS >= 0\n");
    return 2;
  }
  req_warm_len = snprintf(req_warm, sizeof req_warm, "GET /warm HTTP/1.1\r\nhost: %s\r\n\r\n", argv[3]);
  req_hold_len = snprintf(req_hold, sizeof req_hold, "GET /hold HTTP/1.1\r\nhost: %s\r\n\r\n", argv[3]);
  double *times = malloc(sizeof(double) * (size_t)n * (size_t)(rounds + 1));
  int *statuses = calloc((size_t)n * (size_t)(rounds + 1), sizeof(int));
  for (int r = 0; r <= rounds; r++) burst(hold, n, times + r * n, statuses + r * n);
  printf("{\"cold\":");
  print_round(times, statuses, n);
  printf(",\"rounds\":[");
  for (int r = 1; r <= rounds; r++) {
    if (r > 1) printf(",");
    print_round(times + r * n, statuses + r * n, n);
  }
  printf("]}\n");
  return 0;
}
