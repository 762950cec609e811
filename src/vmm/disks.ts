/**
 * A VM disk: the image (raw or qcow2 chain), its lock, the virtio-blk device on a virtio-mmio
 * window, and the eventfds that connect it to KVM. Queue notifications arrive on an ioeventfd
 * (the vCPU never leaves the kernel for them) and are served on the main thread's event loop.
 */
import { open as openFile, type FileHandle } from 'node:fs/promises';
import type { VmFd } from '../kvm/vm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { fileErrorReason } from '../util/fs.js';
import type { Bus, InterruptLine, MmioDevice } from '../devices/bus.js';
import type { BlockBackend } from '../block/backend.js';
import { lockImage, unlockImage } from '../block/lock.js';
import { lockBackingChain } from '../block/chain/lock.js';
import { VirtioBlk } from '../devices/block/virtio-blk/device.js';
import type { VirtioBlkState } from '../devices/block/virtio-blk/persist.js';
import type { VirtioMmioState, VirtioMmioTransport } from '../devices/virtio/mmio.js';
import { VirtioMmioSlot, type VirtioSlot } from './virtio-mmio-slot.js';
import { InputFileError } from './errors.js';
import { ConfigError } from '../errors.js';
import { log } from '../util/log.js';
import type { DiskConfig } from './config.js';

export class Disk {
  device: VirtioBlk;
  private attached: VirtioMmioSlot | undefined;
  private closed = false;
  /** Set between quiesce() and unquiesce() (VM pause): a backend swap must not restart I/O then. */
  private quiesced = false;
  /** Read locks on backing images this VM froze under the disk (external snapshots), by path. */
  private readonly backingLocks = new Map<string, FileHandle>();
  /** The current image's file name as configured or switched to (the config keeps the first). */
  private currentPath: string;
  /** The format as configured (absent: detected), then that of each image switched to. */
  private currentFormat: string | undefined;
  /** tsvmm switched the disk to an image of its own making (an overlay over the old one). */
  private switched = false;

  /** `config` is the disk as the VM was built with it; `path` and `format` tell where it is now. */
  constructor(readonly config: DiskConfig, private current: BlockBackend, private lockHandle: FileHandle) {
    this.currentPath = config.path;
    this.currentFormat = config.format;
    const opts: ConstructorParameters<typeof VirtioBlk>[1] = { onError: (m) => log.warn(`disk ${config.id}: ${m}`) };
    if (config.serial !== undefined) opts.serial = config.serial;
    this.device = new VirtioBlk(current, opts);
  }

  /** The image the guest reads and writes now (the top of its chain). */
  get backend(): BlockBackend {
    return this.current;
  }

  /** The file name of the current image, as given (not resolved). */
  get path(): string {
    return this.currentPath;
  }

  get format(): string | undefined {
    return this.currentFormat;
  }

  /**
   * The disk's config as it stands now: what vm.info reports, a reboot opens and a snapshot stores.
   * `backing_files` is always explicit (a snapshot without it is from before the field: see
   * snapshot-config.ts), and on once tsvmm moved the disk onto a chain it made: the backing file
   * names in that chain are the ones tsvmm wrote.
   */
  currentConfig(): DiskConfig {
    const { format: _configured, ...rest } = this.config;
    return {
      ...rest, path: this.currentPath, ...(this.currentFormat === undefined ? {} : { format: this.currentFormat }),
      backing_files: this.config.backing_files === true || this.switched,
    };
  }

  /**
   * Switches the guest to another image atomically with respect to its I/O: new requests wait
   * (the vCPUs keep running), in-flight ones finish, `prepare` builds the next image (it may flush
   * the current one and reopen it as a backing file), the device switches, requests flow again.
   * If `prepare` throws, the guest continues on the current image. Returns how long guest I/O was
   * held, and the previous image and its lock (null when the swap kept the lock), which the
   * caller now owns (to close or keep).
   */
  async swapBackend(prepare: (current: BlockBackend) => Promise<DiskSwap>): Promise<{ heldMs: number; previous: BlockBackend; previousLock: FileHandle | null }> {
    if (this.closed) throw new ConfigError(`disk "${this.config.id}" is closed`);
    const start = performance.now();
    await this.device.drain();
    try {
      const next = await prepare(this.current);
      this.device.setBackend(next.backend);
      const previous = this.current;
      const previousLock = next.lockHandle === undefined ? null : this.lockHandle;
      this.current = next.backend;
      if (next.lockHandle !== undefined) this.lockHandle = next.lockHandle;
      this.currentPath = next.path;
      this.currentFormat = next.format;
      this.switched = true;
      return { heldMs: performance.now() - start, previous, previousLock };
    } finally {
      if (!this.quiesced) this.device.resumeProcessing();
    }
  }

  /** Keeps `handle` open with a read lock on `path` (a frozen backing image) until the disk closes. */
  async holdBackingLock(path: string, handle: FileHandle): Promise<void> {
    unlockImage(handle.fd);
    await lockImage(handle.fd, path, 'read');
    const old = this.backingLocks.get(path);
    this.backingLocks.set(path, handle);
    if (old !== undefined && old !== handle) await old.close();
  }

  /** Gives up the read lock held on backing image `path` (before it is written or deleted). */
  async releaseBackingLock(path: string): Promise<void> {
    const h = this.backingLocks.get(path);
    this.backingLocks.delete(path);
    await h?.close();
  }

  get backingLockPaths(): string[] {
    return [...this.backingLocks.keys()];
  }

  /** Puts the device on the MMIO bus at slot `index` and wires its notify/interrupt to KVM. */
  attach(index: number, vmFd: VmFd, memory: GuestMemory, mmio: Bus<MmioDevice>, lineFor: (gsi: number) => InterruptLine, saved?: VirtioMmioState): void {
    const onError = (m: string): void => log.warn(`disk ${this.config.id}: ${m}`);
    if (saved !== undefined) this.device = VirtioBlk.fromState({ backend: this.backend, onError }, saved.device as VirtioBlkState);
    this.attached = VirtioMmioSlot.attach({
      name: `virtio-blk:${this.config.id}`, index, device: this.device, vmFd, memory, mmio, lineFor,
      onDeviceError: (reason) => log.warn(`disk ${this.config.id} needs reset: ${reason}`),
      ...(saved === undefined ? {} : { saved }),
    });
  }

  /** The virtio-mmio window the guest finds the disk at (after attach). */
  get slot(): VirtioSlot | undefined {
    return this.attached?.slot;
  }

  get transport(): VirtioMmioTransport | undefined {
    return this.attached?.transport;
  }

  /**
   * Grows the disk under the guest (Cloud Hypervisor's vm.resize-disk): new requests wait (the
   * vCPUs keep running), those in flight finish, the image grows, the device shows the new
   * capacity and the driver is told by a configuration-change interrupt. Disks only grow: cutting
   * off a tail the guest's file system may use would lose data.
   */
  async resize(newSize: number): Promise<void> {
    const id = this.config.id;
    if (this.closed) throw new ConfigError(`disk "${id}" is closed`);
    if (this.config.readonly) throw new ConfigError(`disk "${id}" is read-only: it cannot be resized`);
    if (!Number.isSafeInteger(newSize) || newSize <= 0 || newSize % SECTOR_BYTES !== 0) {
      throw new ConfigError(`desired_size: ${newSize} is not a positive multiple of ${SECTOR_BYTES} bytes (virtio-blk counts 512-byte sectors)`);
    }
    const size = this.current.size;
    if (newSize < size) throw new ConfigError(`disk "${id}": ${newSize} bytes is smaller than the disk (${size}); tsvmm only grows disks (a shrink would cut off data)`);
    if (newSize === size) return;
    await this.device.drain();
    try {
      await this.current.resize(newSize);
      this.device.capacityChanged();
    } finally {
      if (!this.quiesced) this.device.resumeProcessing();
    }
    this.transport?.configChanged();
  }

  quiesce(): Promise<void> {
    this.quiesced = true;
    return this.device.drain();
  }

  unquiesce(): void {
    this.quiesced = false;
    this.device.resumeProcessing();
  }

  counters(): Record<string, number> {
    return { ...this.device.counters() };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.attached?.close();
    await this.device.drain();
    await this.current.close();
    await this.lockHandle.close();
    for (const h of this.backingLocks.values()) await h.close();
    this.backingLocks.clear();
  }
}

/** The disk with API/snapshot id `id`; a 400 naming the disks there are when there is none. */
export function diskById(disks: readonly Disk[], id: string): Disk {
  const d = disks.find((x) => x.config.id === id);
  if (d === undefined) throw new ConfigError(`no disk "${id}" (disks: ${disks.map((x) => x.config.id).join(', ') || 'none'})`);
  return d;
}

/** virtio-blk's capacity unit (its configuration space counts 512-byte sectors). */
const SECTOR_BYTES = 512;

/**
 * What Disk.swapBackend switches to: the open image, the handle holding its lock (absent: the same
 * file stays locked by the current handle, e.g. a wrapper around the same image), and its name.
 */
export interface DiskSwap {
  backend: BlockBackend;
  lockHandle?: FileHandle;
  path: string;
  format: 'raw' | 'qcow2';
}

/**
 * Opens every configured disk: the image through its whole backing chain, and a lock on the top
 * image (write lock when writable) so no other tsvmm or qemu-img writes it under the guest.
 */
export async function openDisks(configs: readonly DiskConfig[]): Promise<Disk[]> {
  const disks: Disk[] = [];
  if (configs.length === 0) return disks;
  // The image engines load only for VMs that have disks (start-up time of diskless VMs).
  const { openDisk } = await import('../block/open.js');
  try {
    for (const c of configs) {
      let lockHandle: FileHandle;
      try {
        lockHandle = await openFile(c.path, c.readonly ? 'r' : 'r+');
      } catch (e) {
        const why = fileErrorReason(e);
        throw new InputFileError(`--disk ${c.path}: ${why === 'is a directory' ? 'is a directory, not a disk image file' : why}`);
      }
      try {
        // A read-only open of a directory or a device succeeds; the image code needs a regular file
        // (its size comes from stat), so refuse anything else here with a message that says so.
        const st = await lockHandle.stat();
        if (st.isDirectory()) throw new InputFileError(`--disk ${c.path}: is a directory, not a disk image file`);
        if (!st.isFile()) throw new InputFileError(`--disk ${c.path}: is not a regular file (tsvmm takes raw or qcow2 image files)`);
        await lockImage(lockHandle.fd, c.path, c.readonly ? 'read' : 'write');
        const openOpts: Parameters<typeof openDisk>[1] = { readOnly: c.readonly };
        if (c.backing_files !== true) {
          openOpts.beforeBacking = (image, backing) => {
            throw new InputFileError(`--disk ${c.path}: ${image === c.path ? 'the image' : image} names a backing file (${backing}); tsvmm follows backing files only with backing_files=on (give it for images you trust: the name is read from the image)`);
          };
        }
        if (c.format === 'raw' || c.format === 'qcow2') openOpts.format = c.format;
        const backend = await openDisk(c.path, openOpts);
        disks.push(new Disk(c, backend, lockHandle));
      } catch (e) {
        await lockHandle.close();
        throw e;
      }
      // Backing files are read-locked (as QEMU does), which also protects snapshot images frozen
      // under the disk; the disk holds the locks until it closes.
      const disk = disks[disks.length - 1]!;
      await lockBackingChain(disk.backend, (path, handle) => disk.holdBackingLock(path, handle));
    }
  } catch (e) {
    for (const d of disks) await d.close();
    throw e;
  }
  return disks;
}
