/*
 * mem-probe: the guest side of the live-snapshot tests. It keeps memory changing in the two ways
 * a VMM must track, and checks on every pass that nothing it wrote was lost:
 *
 *   anonymous memory  MIB MiB, swept page by page: each page is checked to hold the previous
 *                     generation's words, then rewritten with this generation's (the vCPU
 *                     writes KVM's dirty log sees);
 *   disk reads        (with DEVICE) 64 KiB reads with O_DIRECT from a disk whose every 8-byte word
 *                     is a known function of its offset, into a ring of slots that the device
 *                     fills by DMA (the VMM's own writes into guest memory, which KVM never sees).
 *                     Before a slot is read into again, it is checked to still hold what the
 *                     last read put there.
 *
 * Its state (generation, sweep position, what each slot holds) lives in its own memory, so a
 * restored snapshot resumes it consistently: a page the snapshot missed holds an older
 * generation, or a slot holds other bytes than its read returned, and the next check says so.
 *
 *   mem-probe MIB [DEVICE [SLEEP_US]]
 *     prints "mem-probe: pass N ok" after each sweep, "mem-probe: MISMATCH ..." and exits 1 on a
 *     lost write. SLEEP_US (default 0) pauses after each MiB, to dirty memory at a modest rate.
 *
 * Disk content: the word at byte offset o is o ^ DISK_KEY (the host test writes the image).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <unistd.h>

#define PAGE 4096UL
#define CHUNK (64UL * 1024)
#define SLOTS 64
#define DISK_KEY 0x4d454d50524f4245ULL

static uint64_t anon_word(uint64_t gen, uint64_t page, uint64_t i)
{
    return (gen << 40) ^ (page << 9) ^ i ^ 0x5a5a5a5a00000000ULL;
}

static int check_slot(const uint64_t *slot, uint64_t disk_off, unsigned s)
{
    for (uint64_t i = 0; i < CHUNK / 8; i++) {
        uint64_t want = (disk_off + i * 8) ^ DISK_KEY;
        if (slot[i] != want) {
            printf("mem-probe: MISMATCH dma slot %u disk offset 0x%llx word %llu: got 0x%016llx want 0x%016llx\n", s,
                   (unsigned long long)disk_off, (unsigned long long)i, (unsigned long long)slot[i], (unsigned long long)want);
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mem-probe MIB [DEVICE [SLEEP_US]]\n");
        return 2;
    }
    uint64_t pages = strtoull(argv[1], NULL, 0) * (1024 * 1024 / PAGE);
    unsigned sleep_us = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 0;
    uint64_t *anon = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (anon == MAP_FAILED) { perror("mem-probe: mmap"); return 2; }

    int disk = -1;
    uint64_t disk_chunks = 0, next_chunk = 0;
    uint64_t *slots = NULL;
    static int64_t slot_chunk[SLOTS];
    if (argc > 2) {
        disk = open(argv[2], O_RDONLY | O_DIRECT);
        uint64_t bytes = 0;
        if (disk < 0 || ioctl(disk, BLKGETSIZE64, &bytes) != 0) { perror("mem-probe: disk"); return 2; }
        disk_chunks = bytes / CHUNK;
        if (posix_memalign((void **)&slots, PAGE, SLOTS * CHUNK) != 0 || disk_chunks == 0) { fprintf(stderr, "mem-probe: no DMA slots\n"); return 2; }
        memset(slots, 0, SLOTS * CHUNK);
        for (unsigned s = 0; s < SLOTS; s++) slot_chunk[s] = -1;
    }
    unsigned next_slot = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("mem-probe: %llu MiB anonymous%s\n", (unsigned long long)(pages * PAGE >> 20), disk >= 0 ? ", disk reads into 64 slots" : "");

    for (uint64_t gen = 1;; gen++) {
        for (uint64_t p = 0; p < pages; p++) {
            uint64_t *w = anon + p * (PAGE / 8);
            /* Generation 0 is the zero page MAP_POPULATE gave us. */
            for (uint64_t i = 0; i < PAGE / 8; i++) {
                uint64_t want = gen == 1 ? 0 : anon_word(gen - 1, p, i);
                if (w[i] != want) {
                    printf("mem-probe: MISMATCH anon page %llu word %llu in pass %llu: got 0x%016llx want 0x%016llx\n",
                           (unsigned long long)p, (unsigned long long)i, (unsigned long long)gen, (unsigned long long)w[i], (unsigned long long)want);
                    return 1;
                }
            }
            for (uint64_t i = 0; i < PAGE / 8; i++) w[i] = anon_word(gen, p, i);
            if ((p & 255) == 255) {
                if (disk >= 0) {
                    unsigned s = next_slot;
                    uint64_t *slot = slots + s * (CHUNK / 8);
                    if (slot_chunk[s] >= 0 && !check_slot(slot, (uint64_t)slot_chunk[s] * CHUNK, s)) return 1;
                    uint64_t c = next_chunk;
                    if (pread(disk, slot, CHUNK, (off_t)(c * CHUNK)) != (ssize_t)CHUNK) { perror("mem-probe: pread"); return 2; }
                    if (!check_slot(slot, c * CHUNK, s)) return 1;
                    slot_chunk[s] = (int64_t)c;
                    next_slot = (s + 1) % SLOTS;
                    /* A stride coprime with the chunk count: every slot sees ever-different chunks. */
                    next_chunk = (c + 7) % disk_chunks;
                }
                if (sleep_us > 0) usleep(sleep_us);
            }
        }
        printf("mem-probe: pass %llu ok\n", (unsigned long long)gen);
    }
}
