/*
 * rng-probe: what tsvmm's tests ask of the guest kernel's random number generator.
 *
 *   rng-probe reseed           reseed the kernel's RNG from its input pool now (RNDRESEEDCRNG,
 *                              root only), so no timed reseed falls in the next seconds
 *   rng-probe draw-after FIFO  wait until FIFO is opened for writing, then print 16 bytes of
 *                              getrandom() in hex: a draw that happens at a moment the test picks,
 *                              with nothing run (no exec, no fork) between that moment and it
 *
 * Clones restored from one snapshot that run `draw-after` print the same bytes unless something
 * told their kernels they were cloned (VMGenID).
 */
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

static int reseed(void) {
  int fd = open("/dev/urandom", O_RDWR);
  if (fd < 0 || ioctl(fd, RNDRESEEDCRNG) != 0) {
    perror("rng-probe: RNDRESEEDCRNG");
    return 1;
  }
  close(fd);
  return 0;
}

static int draw_after(const char *fifo) {
  int fd = open(fifo, O_RDONLY); /* blocks until a writer opens it */
  if (fd < 0) {
    perror(fifo);
    return 1;
  }
  unsigned char buf[16];
  if (getrandom(buf, sizeof buf, 0) != (ssize_t)sizeof buf) {
    perror("rng-probe: getrandom");
    return 1;
  }
  for (size_t i = 0; i < sizeof buf; i++) printf("%02x", buf[i]);
  printf("\n");
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "reseed") == 0) return reseed();
  if (argc == 3 && strcmp(argv[1], "draw-after") == 0) return draw_after(argv[2]);
  fprintf(stderr, "usage: rng-probe reseed | rng-probe draw-after FIFO\n");
  return 2;
}
