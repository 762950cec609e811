/**
 * The machine around the vCPUs: the port and MMIO buses and the devices on them (COM1, the i8042
 * reset line, the power-off port, the power button, virtio-blk disks, the virtio console,
 * virtio-rng, virtio-vsock, virtio-net), with their interrupt lines wired to KVM.
 * Everything here runs on the main thread.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { VmFd } from '../kvm/vm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { EventFd } from '../sys/eventfd.js';
import { Bus, type InterruptLine, type MmioDevice, type PioDevice } from '../devices/bus.js';
import { Serial16550, type SerialState } from '../devices/serial.js';
import { I8042, I8042_BASE, I8042_SIZE, type I8042State } from '../devices/i8042.js';
import type { VirtioMmioState } from '../devices/virtio/mmio.js';
import { ConfigError } from '../errors.js';
import { DebugExit, DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE } from '../devices/debug-exit.js';
import { AcpiResetRegister, AcpiSleepControl } from '../devices/acpi-sleep.js';
import { ACPI_RESET_PORT, ACPI_RESET_VALUE, ACPI_S5_SLEEP_TYPE, ACPI_SLEEP_CONTROL_PORT, IOAPIC_BASE, POWER_BUTTON_GSI, VMGENID_GSI } from '../memory/layout.js';
import { VmGenId, type VmGenIdState } from '../devices/acpi/vmgenid.js';
import { RateLimiter } from '../devices/rate-limiter.js';
import { VMGENID_ADDR } from './boot/addresses.js';
import type { NetConfig, RngConfig, VmConfig, VsockConfig } from './config.js';
import type { DeviceNode, DeviceResource } from './controller.js';
import type { VmEnd } from './exit-status.js';
import { Disk, openDisks } from './disks.js';
import { VirtioMmioSlot, type VirtioSlot } from './virtio-mmio-slot.js';
import { VirtioConsole } from '../devices/console/virtio-console/device.js';
import { VirtioRng } from '../devices/rng/virtio-rng/device.js';
import { VirtioVsock } from '../devices/vsock/virtio-vsock/device.js';
import { VsockUnixBackend } from './vsock-unix.js';
import { VirtioNet } from '../devices/net/virtio-net/device.js';
import { TapBackend } from './net-tap.js';
import { InputFileError } from './errors.js';
import { fileErrorReason } from '../util/fs.js';
import { log } from '../util/log.js';
import { SerialFastPath, type SerialShareInit } from './serial-fastpath.js';

export const COM1_PORT = 0x3f8;
export const COM1_SIZE = 8;
export const COM1_GSI = 4;
/** The IOAPIC's register window. */
const IOAPIC_SIZE = 0x1000;
/** Device ids in vm.counters and vm.info's device tree, as Cloud Hypervisor names its devices. */
export const CONSOLE_ID = '__console';
export const RNG_ID = '__rng';
export const SERIAL_ID = '__serial';
export const IOAPIC_ID = '__ioapic';

/** Device state in snapshots: `serial` is absent when the VM has no serial port. */
export interface PlatformState {
  serial?: SerialState;
  i8042: I8042State;
  /** virtio-mmio transport (with the block device inside) per disk id. */
  disks: Record<string, VirtioMmioState>;
  /** The virtio console's transport (with the device inside); absent when the console is off. */
  console?: VirtioMmioState;
  /** The virtio-rng transport; absent in snapshots from before the device existed. */
  rng?: VirtioMmioState;
  /** The virtio-vsock transport; absent when the VM has none. */
  vsock?: VirtioMmioState;
  /** virtio-net transport (with the device inside) per network device id; absent when the VM has none. */
  net?: Record<string, VirtioMmioState>;
  /** Where the VM generation ID is; absent in snapshots from before tsvmm had one. */
  vmgenid?: VmGenIdState;
}

export interface PlatformHooks {
  /** Bytes the guest wrote to its serial port. */
  onSerialOutput(bytes: Uint8Array): void;
  /** Bytes the guest wrote to its virtio console. */
  onConsoleOutput(bytes: Uint8Array): void;
  onEnd(end: VmEnd): void;
}

/** An interrupt line backed by a KVM irqfd: a write to the eventfd raises the GSI in the kernel. */
export class IrqfdLine implements InterruptLine {
  private constructor(private readonly vm: VmFd, readonly gsi: number, readonly eventfd: EventFd) {}

  static register(vm: VmFd, gsi: number): IrqfdLine {
    const efd = EventFd.create();
    vm.irqfd(efd, gsi);
    return new IrqfdLine(vm, gsi, efd);
  }

  trigger(): void {
    this.eventfd.write(1n);
  }

  close(): void {
    this.vm.irqfdDeassign(this.eventfd, this.gsi);
    this.eventfd.close();
  }
}

export class Platform {
  readonly pio = new Bus<PioDevice>();
  readonly mmio = new Bus<MmioDevice>();
  readonly unclaimed = { unclaimed: 0 };
  readonly serial: Serial16550 | undefined;
  private readonly serialFastPath: SerialFastPath | undefined;
  private readonly i8042: I8042;
  /** The virtio console and its MMIO slot (after the disks'); absent when the console is off. */
  private console: { device: VirtioConsole; slot: VirtioMmioSlot } | undefined;
  /** The virtio-rng device, its slot (after the console's) and the entropy source it reads. */
  private rng: { device: VirtioRng; slot: VirtioMmioSlot; source: number } | undefined;
  /** virtio-vsock, its slot (the last), the Unix sockets of its host side, and its config. */
  private vsock: { device: VirtioVsock; slot: VirtioMmioSlot; backend: VsockUnixBackend; config: VsockConfig } | undefined;
  /** virtio-net devices (slots after all others, in config order), each with its tap. */
  private readonly nets: { device: VirtioNet; slot: VirtioMmioSlot; backend: TapBackend; config: NetConfig }[] = [];
  /** The VM generation ID; absent only in a VM restored from a snapshot older than the device. */
  private vmGenId: VmGenId | undefined;
  private readonly lines: IrqfdLine[] = [];
  /** The interrupt of the ACPI generic event device whose event method notifies the power button. */
  private readonly powerButton: IrqfdLine;
  private pendingInput: Uint8Array[] = [];
  private closed = false;

  private constructor(
    private readonly vmFd: VmFd,
    hooks: PlatformHooks,
    readonly disks: Disk[],
    serialEnabled: boolean,
    saved: PlatformState | undefined,
  ) {
    if (serialEnabled) {
      const opts = { interrupt: this.line(COM1_GSI), output: hooks.onSerialOutput, onInputSpace: () => this.drainInput() };
      this.serial = saved?.serial !== undefined ? Serial16550.fromState(opts, saved.serial) : new Serial16550(opts);
      // The fast path stands in front of the UART so trapped accesses see queued bytes first.
      this.serialFastPath = new SerialFastPath(this.serial, COM1_PORT);
      this.pio.insert('com1', COM1_PORT, COM1_SIZE, this.serialFastPath);
    }
    const onReset = (): void => hooks.onEnd({ kind: 'reset' });
    this.i8042 = saved !== undefined ? I8042.fromState(onReset, saved.i8042) : new I8042(onReset);
    this.pio.insert('i8042', I8042_BASE, I8042_SIZE, this.i8042);
    this.pio.insert('debug-exit', DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, new DebugExit((status) => hooks.onEnd({ kind: 'poweroff', status })));
    // ACPI soft-off (S5), how a Linux guest's `poweroff` ends the VM.
    this.pio.insert('acpi-sleep', ACPI_SLEEP_CONTROL_PORT, 2, new AcpiSleepControl(ACPI_S5_SLEEP_TYPE, () => hooks.onEnd({ kind: 'poweroff', status: 0 })));
    this.pio.insert('acpi-reset', ACPI_RESET_PORT, 1, new AcpiResetRegister(ACPI_RESET_VALUE, onReset));
    this.powerButton = this.line(POWER_BUTTON_GSI);
  }

  /**
   * Presses the power button: an edge on the generic event device's interrupt; the guest's ACPI
   * code notifies the button device (boot/acpi.ts) and its driver reports KEY_POWER.
   */
  pressPowerButton(): void {
    this.powerButton.trigger();
  }

  /** Opens the disks and builds the devices, fresh or from a snapshot's `saved` state. */
  static async create(config: VmConfig, vmFd: VmFd, memory: GuestMemory, hooks: PlatformHooks, saved?: PlatformState): Promise<Platform> {
    if (saved !== undefined) {
      if ((saved.serial !== undefined) !== (config.serial.mode !== 'Off')) {
        throw new ConfigError(`the snapshot's serial port ${saved.serial === undefined ? 'was off' : 'was on'} but the config says mode ${config.serial.mode}`);
      }
      if ((saved.console !== undefined) !== (config.console.mode !== 'Off')) {
        throw new ConfigError(`the snapshot's virtio console ${saved.console === undefined ? 'was off' : 'was on'} but the config says mode ${config.console.mode}`);
      }
      if ((saved.vsock !== undefined) !== (config.vsock !== undefined)) {
        throw new ConfigError(`the snapshot's VM ${saved.vsock === undefined ? 'had no' : 'had a'} vsock device but its config says ${config.vsock === undefined ? 'none' : 'one'}`);
      }
      for (const d of config.disks) {
        if (saved.disks[d.id] === undefined) throw new ConfigError(`the snapshot has no device state for disk "${d.id}"`);
      }
      const nets = config.net ?? [];
      for (const n of nets) {
        if (saved.net?.[n.id] === undefined) throw new ConfigError(`the snapshot has no device state for network device "${n.id}"`);
      }
      const extraNets = Object.keys(saved.net ?? {}).filter((id) => !nets.some((n) => n.id === id));
      if (extraNets.length > 0) throw new ConfigError(`the snapshot has device state for unknown network device(s) ${extraNets.join(', ')}`);
      const extra = Object.keys(saved.disks).filter((id) => !config.disks.some((d) => d.id === id));
      if (extra.length > 0) throw new ConfigError(`the snapshot has device state for unknown disk(s) ${extra.join(', ')}`);
    }
    const disks = await openDisks(config.disks);
    let platform: Platform | undefined;
    try {
      platform = new Platform(vmFd, hooks, disks, config.serial.mode !== 'Off', saved);
      const p = platform;
      disks.forEach((d, i) => d.attach(i, vmFd, memory, p.mmio, (gsi) => p.line(gsi), saved?.disks[d.config.id]));
      if (config.console.mode !== 'Off') p.attachConsole(disks.length, vmFd, memory, hooks, saved?.console);
      // A snapshot from before virtio-rng had none: its guest never probed one, so none is added.
      if (config.rng !== undefined && (saved === undefined || saved.rng !== undefined)) {
        p.attachRng(disks.length + (config.console.mode !== 'Off' ? 1 : 0), config.rng, vmFd, memory, saved?.rng);
      }
      if (config.vsock !== undefined) await p.attachVsock(p.virtioSlots().length, config.vsock, vmFd, memory, saved?.vsock);
      for (const n of config.net ?? []) p.attachNet(p.virtioSlots().length, n, vmFd, memory, saved?.net?.[n.id]);
      // The same for the generation ID: an older snapshot's DSDT names none, so none is written.
      if (saved === undefined) p.vmGenId = VmGenId.create(memory, p.line(VMGENID_GSI), VMGENID_ADDR);
      else if (saved.vmgenid !== undefined) p.vmGenId = VmGenId.fromState(memory, p.line(VMGENID_GSI), saved.vmgenid);
    } catch (e) {
      if (platform !== undefined) await platform.close();
      else for (const d of disks) await d.close();
      throw e;
    }
    return platform;
  }

  /** The virtio console on virtio-mmio slot `index`, fresh or from its saved transport state. */
  private attachConsole(index: number, vmFd: VmFd, memory: GuestMemory, hooks: PlatformHooks, saved: VirtioMmioState | undefined): void {
    const opts = {
      output: hooks.onConsoleOutput,
      onError: (m: string) => log.warn(`console: ${m}`),
      onInputDropped: (n: number) => log.warn(`console: the guest takes no input; ${n} bytes dropped`),
    };
    const device = saved !== undefined ? VirtioConsole.fromState(opts, saved.device) : new VirtioConsole(opts);
    const slot = VirtioMmioSlot.attach({
      name: 'virtio-console', index, device, vmFd, memory, mmio: this.mmio, lineFor: (gsi) => this.line(gsi),
      onDeviceError: (reason) => log.warn(`console needs reset: ${reason}`),
      ...(saved === undefined ? {} : { saved }),
    });
    this.console = { device, slot };
  }

  /** virtio-rng on virtio-mmio slot `index`, reading `rng.src` (opened now: a bad path fails the boot). */
  private attachRng(index: number, rng: RngConfig, vmFd: VmFd, memory: GuestMemory, saved: VirtioMmioState | undefined): void {
    const { src } = rng;
    const source = openEntropySource(src);
    try {
      const opts = {
        fill: (buf: Uint8Array) => fillFrom(source, src, buf),
        onError: (m: string) => log.warn(`rng: ${m}`),
        ...(RateLimiter.limits(rng.rate_limiter_config) ? { rateLimiter: new RateLimiter(rng.rate_limiter_config!) } : {}),
      };
      const device = saved !== undefined ? VirtioRng.fromState(opts, saved.device) : new VirtioRng(opts);
      const slot = VirtioMmioSlot.attach({
        name: 'virtio-rng', index, device, vmFd, memory, mmio: this.mmio, lineFor: (gsi) => this.line(gsi),
        onDeviceError: (reason) => log.warn(`rng needs reset: ${reason}`),
        ...(saved === undefined ? {} : { saved }),
      });
      this.rng = { device, slot, source };
    } catch (e) {
      closeSync(source);
      throw e;
    }
  }

  /**
   * virtio-vsock on virtio-mmio slot `index`, its host side listening on `vsock.socket` (now: a
   * path in use fails the boot). A restored device announces a transport reset when it resumes.
   */
  private async attachVsock(index: number, vsock: VsockConfig, vmFd: VmFd, memory: GuestMemory, saved: VirtioMmioState | undefined): Promise<void> {
    const backend = await VsockUnixBackend.listen(vsock.socket);
    try {
      const opts = {
        guestCid: vsock.cid,
        connectToHost: backend.connectToHost.bind(backend),
        onError: (m: string) => log.warn(`vsock: ${m}`),
      };
      const device = saved !== undefined ? VirtioVsock.fromState(opts, saved.device) : new VirtioVsock(opts);
      backend.attach(device);
      const slot = VirtioMmioSlot.attach({
        name: 'virtio-vsock', index, device, vmFd, memory, mmio: this.mmio, lineFor: (gsi) => this.line(gsi),
        onDeviceError: (reason) => log.warn(`vsock needs reset: ${reason}`),
        ...(saved === undefined ? {} : { saved }),
      });
      this.vsock = { device, slot, backend, config: vsock };
    } catch (e) {
      await backend.close();
      throw e;
    }
  }

  /** virtio-net on virtio-mmio slot `index`, on its tap (opened now: a tap that cannot be fails the boot). */
  private attachNet(index: number, net: NetConfig, vmFd: VmFd, memory: GuestMemory, saved: VirtioMmioState | undefined): void {
    const backend = TapBackend.open(net);
    try {
      const opts = { mac: net.mac, backend, onError: (m: string) => log.warn(`net ${net.id}: ${m}`) };
      const device = saved !== undefined ? VirtioNet.fromState(opts, saved.device) : new VirtioNet(opts);
      const slot = VirtioMmioSlot.attach({
        name: `virtio-net:${net.id}`, index, device, vmFd, memory, mmio: this.mmio, lineFor: (gsi) => this.line(gsi),
        onDeviceError: (reason) => log.warn(`net ${net.id} needs reset: ${reason}`),
        ...(saved === undefined ? {} : { saved }),
      });
      this.nets.push({ device, slot, backend, config: { ...net, tap: backend.tap.name, host_mac: backend.hostMac() } });
    } catch (e) {
      backend.close();
      throw e;
    }
  }

  /** The network devices' configs as they run: `tap` and `host_mac` as the kernel has them (vm.info, vm.json). */
  netConfigs(): NetConfig[] {
    return this.nets.map((n) => n.config);
  }

  state(): PlatformState {
    const disks: Record<string, VirtioMmioState> = {};
    for (const d of this.disks) disks[d.config.id] = d.transport!.state();
    const s: PlatformState = { i8042: this.i8042.state(), disks };
    if (this.serial !== undefined) s.serial = this.serial.state();
    if (this.console !== undefined) s.console = this.console.slot.transport.state();
    if (this.rng !== undefined) s.rng = this.rng.slot.transport.state();
    if (this.vsock !== undefined) s.vsock = this.vsock.slot.transport.state();
    if (this.nets.length > 0) s.net = Object.fromEntries(this.nets.map((n) => [n.config.id, n.slot.transport.state()]));
    if (this.vmGenId !== undefined) s.vmgenid = this.vmGenId.state();
    return s;
  }

  /**
   * This VM was restored from a snapshot, so other copies of it may run: a new generation ID and
   * its notification (devices/acpi/vmgenid.ts). Called once the restored irqchip is loaded, so
   * the interrupt is not overwritten by the saved one.
   */
  announceRestore(): void {
    this.vmGenId?.announceRestore();
  }

  private line(gsi: number): IrqfdLine {
    const l = IrqfdLine.register(this.vmFd, gsi);
    this.lines.push(l);
    return l;
  }

  /** The virtio-mmio windows the boot code must describe to the guest. */
  virtioSlots(): VirtioSlot[] {
    const slots = this.disks.map((d) => d.slot!);
    if (this.console !== undefined) slots.push(this.console.slot.slot);
    if (this.rng !== undefined) slots.push(this.rng.slot.slot);
    if (this.vsock !== undefined) slots.push(this.vsock.slot.slot);
    for (const n of this.nets) slots.push(n.slot.slot);
    return slots;
  }

  /** Shared state vCPU threads use to send serial output without a trap (none without a UART). */
  serialShare(): SerialShareInit | undefined {
    return this.serialFastPath?.init();
  }

  /** Host keyboard input for the guest's serial port; what the FIFO cannot take waits. */
  serialInput(bytes: Uint8Array): void {
    if (this.serial === undefined) return;
    this.pendingInput.push(bytes);
    this.drainInput();
  }

  /** Host input for the guest's virtio console (dropped when the console is off). */
  consoleInput(bytes: Uint8Array): void {
    this.console?.device.input(bytes);
  }

  /**
   * The host terminal of the virtio console changed size: the driver reads the new size after a
   * configuration-change interrupt (VIRTIO_CONSOLE_F_SIZE), and resizes hvc0.
   */
  resizeConsole(cols: number, rows: number): void {
    const c = this.console;
    if (c !== undefined && c.device.resize(cols, rows)) c.slot.transport.configChanged();
  }

  private drainInput(): void {
    const serial = this.serial;
    if (serial === undefined) return;
    while (this.pendingInput.length > 0) {
      const head = this.pendingInput[0]!;
      const n = serial.enqueueInput(head);
      this.serialFastPath?.publish();
      if (n < head.length) {
        this.pendingInput[0] = head.subarray(n);
        return;
      }
      this.pendingInput.shift();
    }
  }

  /** Stops taking new disk requests and waits for those in flight (pause and snapshot need it). */
  async quiesce(): Promise<void> {
    await Promise.all(this.disks.map((d) => d.quiesce()));
    this.console?.device.pause();
    this.rng?.device.pause();
    this.vsock?.device.pause();
    for (const n of this.nets) n.device.pause();
    this.serialFastPath?.drain();
    this.serial?.flush();
  }

  unquiesce(): void {
    for (const d of this.disks) d.unquiesce();
    this.console?.device.unpause();
    this.rng?.device.unpause();
    this.vsock?.device.unpause();
    for (const n of this.nets) n.device.unpause();
  }

  /** The devices with their address ranges and interrupt lines: vm.info's `device_tree`. */
  deviceTree(): Record<string, DeviceNode> {
    const tree: Record<string, DeviceNode> = {};
    const add = (id: string, resources: DeviceResource[]): void => {
      tree[id] = { id, resources, parent: null, children: [], pci_bdf: null };
    };
    const virtio = (slot: VirtioSlot): DeviceResource[] => [{ MmioAddressRange: { base: slot.base, size: slot.size } }, { LegacyIrq: slot.gsi }];
    add(IOAPIC_ID, [{ MmioAddressRange: { base: IOAPIC_BASE, size: IOAPIC_SIZE } }]);
    if (this.serial !== undefined) add(SERIAL_ID, [{ PioAddressRange: { base: COM1_PORT, size: COM1_SIZE } }, { LegacyIrq: COM1_GSI }]);
    for (const d of this.disks) add(d.config.id, virtio(d.slot!));
    if (this.console !== undefined) add(CONSOLE_ID, virtio(this.console.slot.slot));
    if (this.rng !== undefined) add(RNG_ID, virtio(this.rng.slot.slot));
    if (this.vsock !== undefined) add(this.vsock.config.id, virtio(this.vsock.slot.slot));
    for (const n of this.nets) add(n.config.id, virtio(n.slot.slot));
    return tree;
  }

  counters(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const d of this.disks) out[d.config.id] = d.counters();
    if (this.console !== undefined) out[CONSOLE_ID] = this.console.device.counters();
    if (this.rng !== undefined) out[RNG_ID] = this.rng.device.counters();
    if (this.vsock !== undefined) out[this.vsock.config.id] = this.vsock.device.counters();
    for (const n of this.nets) out[n.config.id] = n.device.counters();
    out['bus'] = { unclaimed_accesses: this.unclaimed.unclaimed };
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.serialFastPath?.close();
    this.serial?.flush();
    this.console?.slot.close();
    if (this.rng !== undefined) {
      this.rng.slot.close();
      closeSync(this.rng.source);
    }
    if (this.vsock !== undefined) {
      this.vsock.device.close();
      this.vsock.slot.close();
      await this.vsock.backend.close();
    }
    for (const n of this.nets) {
      n.device.close();
      n.slot.close();
      n.backend.close();
    }
    for (const d of this.disks) await d.close();
    for (const l of this.lines) l.close();
  }
}

/** Opens the rng source for reading; a clear one-line error when it cannot be. */
function openEntropySource(src: string): number {
  try {
    return openSync(src, 'r');
  } catch (e) {
    throw new InputFileError(`--rng src=${src}: ${fileErrorReason(e)}`);
  }
}

/** Fills all of `buf` from the entropy source (a short read reads again; the end of a file is an error). */
function fillFrom(fd: number, src: string, buf: Uint8Array): void {
  for (let at = 0; at < buf.length;) {
    const n = readSync(fd, buf, at, buf.length - at, null);
    if (n === 0) throw new Error(`the entropy source ${src} has no more bytes`);
    at += n;
  }
}
