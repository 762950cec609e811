/* Polled virtio-blk (virtio-mmio version 2) driver: see virtio_blk.c. */
#ifndef TINY_VIRTIO_BLK_H
#define TINY_VIRTIO_BLK_H

#include "tiny.h"

#define VBLK_T_IN 0
#define VBLK_T_OUT 1
#define VBLK_T_FLUSH 4
#define VBLK_S_OK 0
#define VBLK_S_IOERR 1
#define VBLK_S_UNSUPP 2

#define VBLK_MAX_SLOTS 32               /* requests in flight */
#define VBLK_SLOT_BYTES 65536           /* data buffer per slot, in the DMA area */

struct vblk {
    u64 base;                           /* MMIO window */
    u64 features;                       /* negotiated */
    u64 capacity;                       /* 512-byte sectors */
    u32 blk_size;
    u16 qsize;
    u32 slots;
    bool ro, flush;
};

/* Initialises the want-th virtio-blk device among the cmdline's virtio_mmio.device entries. */
bool vblk_open(u32 want, struct vblk *d);
/* Fills slot's request; buf is a guest-physical buffer of `bytes` (ignored for FLUSH). */
void vblk_queue(struct vblk *d, u32 slot, u32 type, u64 sector, u64 buf, u32 bytes);
/* Publishes everything queued, notifies, waits for all of it. 0, or -1 on timeout. */
int vblk_run(struct vblk *d, u64 timeout_cycles);
u8 vblk_status(u32 slot);

#endif
