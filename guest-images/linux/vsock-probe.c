/*
 * vsock-probe: the guest side of tsvmm's virtio-vsock tests (AF_VSOCK stream sockets; busybox has
 * none).
 *
 *   vsock-probe listen PORT     accept connections on PORT one at a time and echo each back until
 *                               the peer half-closes, then close it
 *   vsock-probe send PORT TEXT  connect to the host (CID 2) port PORT, send TEXT, half-close, and
 *                               print what comes back until the host closes
 *   vsock-probe agent PORT      a guest agent: connect to the host port PORT and say
 *                               "agent N up\n" (N counts connections), echo what the host sends;
 *                               when the connection goes (a reset after a restore), connect again
 *
 * Exit status 0, or 1 with a message on stderr.
 */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what) {
  fprintf(stderr, "vsock-probe: %s: %s\n", what, strerror(errno));
  return 1;
}

static struct sockaddr_vm address(unsigned cid, unsigned port) {
  struct sockaddr_vm a;
  memset(&a, 0, sizeof a);
  a.svm_family = AF_VSOCK;
  a.svm_cid = cid;
  a.svm_port = port;
  return a;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Echoes `fd` back to itself until EOF; -1 on an error (a reset). */
static int echo(int fd) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (write_all(fd, buf, (size_t)n) != 0) return -1;
  }
}

static int listen_on(unsigned port) {
  int s = socket(AF_VSOCK, SOCK_STREAM, 0);
  struct sockaddr_vm a = address(VMADDR_CID_ANY, port);
  if (s < 0) return fail("socket");
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return fail("bind");
  if (listen(s, 8) != 0) return fail("listen");
  printf("vsock-probe: listening on %u\n", port);
  fflush(stdout);
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR) continue;
      return fail("accept");
    }
    echo(c);
    close(c);
  }
}

static int connect_host(unsigned port) {
  int s = socket(AF_VSOCK, SOCK_STREAM, 0);
  struct sockaddr_vm a = address(VMADDR_CID_HOST, port);
  if (s < 0) return -1;
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
    int e = errno;
    close(s);
    errno = e;
    return -1;
  }
  return s;
}

static int send_text(unsigned port, const char *text) {
  char buf[4096];
  int s = connect_host(port);
  if (s < 0) return fail("connect");
  if (write_all(s, text, strlen(text)) != 0) return fail("write");
  if (shutdown(s, SHUT_WR) != 0) return fail("shutdown");
  for (;;) {
    ssize_t n = read(s, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) return fail("read");
    fwrite(buf, 1, (size_t)n, stdout);
  }
  fflush(stdout);
  close(s);
  return 0;
}

static _Noreturn void agent(unsigned port) {
  for (unsigned n = 0;; n++) {
    int s;
    while ((s = connect_host(port)) < 0) usleep(100 * 1000);
    char hello[32];
    snprintf(hello, sizeof hello, "agent %u up\n", n);
    if (write_all(s, hello, strlen(hello)) == 0) echo(s);
    close(s);
  }
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "listen") == 0) return listen_on((unsigned)strtoul(argv[2], NULL, 10));
  if (argc == 4 && strcmp(argv[1], "send") == 0) return send_text((unsigned)strtoul(argv[2], NULL, 10), argv[3]);
  if (argc == 3 && strcmp(argv[1], "agent") == 0) agent((unsigned)strtoul(argv[2], NULL, 10));
  fprintf(stderr, "usage: vsock-probe listen PORT | send PORT TEXT | agent PORT\n");
  return 2;
}
