import { EventFd } from '../sys/eventfd.js';
import { Bus } from '../devices/bus.js';
import { Serial16550 } from '../devices/serial.js';
import { I8042, I8042_BASE, I8042_SIZE } from '../devices/i8042.js';
import { ConfigError } from '../errors.js';
import { DebugExit, DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE } from '../devices/debug-exit.js';
import { openDisks } from './disks.js';
import { SerialFastPath } from './serial-fastpath.js';
export const COM1_PORT = 0x3f8;
export const COM1_SIZE = 8;
export const COM1_GSI = 4;
/** An interrupt line backed by a KVM irqfd: a write to the eventfd raises the GSI in the kernel. */
export class IrqfdLine {
    vm;
    gsi;
    eventfd;
    constructor(vm, gsi, eventfd) {
        this.vm = vm;
        this.gsi = gsi;
        this.eventfd = eventfd;
    }
    static register(vm, gsi) {
        const efd = EventFd.create();
        vm.irqfd(efd, gsi);
        return new IrqfdLine(vm, gsi, efd);
    }
    trigger() {
        this.eventfd.write(1n);
    }
    close() {
        this.vm.irqfdDeassign(this.eventfd, this.gsi);
        this.eventfd.close();
    }
}
export class Platform {
    vmFd;
    disks;
    pio = new Bus();
    mmio = new Bus();
    unclaimed = { unclaimed: 0 };
    serial;
    serialFastPath;
    i8042;
    lines = [];
    pendingInput = [];
    closed = false;
    constructor(vmFd, hooks, disks, serialEnabled, saved) {
        this.vmFd = vmFd;
        this.disks = disks;
        if (serialEnabled) {
            const opts = { interrupt: this.line(COM1_GSI), output: hooks.onSerialOutput, onInputSpace: () => this.drainInput() };
            this.serial = saved?.serial !== undefined ? Serial16550.fromState(opts, saved.serial) : new Serial16550(opts);
            // The fast path stands in front of the UART so trapped accesses see queued bytes first.
            this.serialFastPath = new SerialFastPath(this.serial, COM1_PORT);
            this.pio.insert('com1', COM1_PORT, COM1_SIZE, this.serialFastPath);
        }
        const onReset = () => hooks.onEnd({ kind: 'reset' });
        this.i8042 = saved !== undefined ? I8042.fromState(onReset, saved.i8042) : new I8042(onReset);
        this.pio.insert('i8042', I8042_BASE, I8042_SIZE, this.i8042);
        this.pio.insert('debug-exit', DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, new DebugExit((status) => hooks.onEnd({ kind: 'poweroff', status })));
    }
    /** Opens the disks and builds the devices, fresh or from a snapshot's `saved` state. */
    static async create(config, vmFd, memory, hooks, saved) {
        if (saved !== undefined) {
            if ((saved.serial !== undefined) !== (config.serial.mode !== 'Off')) {
                throw new ConfigError(`the snapshot's serial port ${saved.serial === undefined ? 'was off' : 'was on'} but the config says mode ${config.serial.mode}`);
            }
            for (const d of config.disks) {
                if (saved.disks[d.id] === undefined)
                    throw new ConfigError(`the snapshot has no device state for disk "${d.id}"`);
            }
            const extra = Object.keys(saved.disks).filter((id) => !config.disks.some((d) => d.id === id));
            if (extra.length > 0)
                throw new ConfigError(`the snapshot has device state for unknown disk(s) ${extra.join(', ')}`);
        }
        const disks = await openDisks(config.disks);
        let platform;
        try {
            platform = new Platform(vmFd, hooks, disks, config.serial.mode !== 'Off', saved);
            const p = platform;
            disks.forEach((d, i) => d.attach(i, vmFd, memory, p.mmio, (gsi) => p.line(gsi), saved?.disks[d.config.id]));
        }
        catch (e) {
            if (platform !== undefined)
                await platform.close();
            else
                for (const d of disks)
                    await d.close();
            throw e;
        }
        return platform;
    }
    state() {
        const disks = {};
        for (const d of this.disks)
            disks[d.config.id] = d.transport.state();
        const s = { i8042: this.i8042.state(), disks };
        if (this.serial !== undefined)
            s.serial = this.serial.state();
        return s;
    }
    line(gsi) {
        const l = IrqfdLine.register(this.vmFd, gsi);
        this.lines.push(l);
        return l;
    }
    /** The virtio-mmio windows the boot code must describe to the guest. */
    virtioSlots() {
        return this.disks.map((d) => d.slot);
    }
    /** Shared state vCPU threads use to send serial output without a trap (none without a UART). */
    serialShare() {
        return this.serialFastPath?.init();
    }
    /** Host keyboard input for the guest's serial port; what the FIFO cannot take waits. */
    serialInput(bytes) {
        if (this.serial === undefined)
            return;
        this.pendingInput.push(bytes);
        this.drainInput();
    }
    drainInput() {
        const serial = this.serial;
        if (serial === undefined)
            return;
        while (this.pendingInput.length > 0) {
            const head = this.pendingInput[0];
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
    async quiesce() {
        await Promise.all(this.disks.map((d) => d.quiesce()));
        this.serialFastPath?.drain();
        this.serial?.flush();
    }
    unquiesce() {
        for (const d of this.disks)
            d.unquiesce();
    }
    counters() {
        const out = {};
        for (const d of this.disks)
            out[d.config.id] = d.counters();
        out['bus'] = { unclaimed_accesses: this.unclaimed.unclaimed };
        return out;
    }
    async close() {
        if (this.closed)
            return;
        this.closed = true;
        this.serialFastPath?.close();
        this.serial?.flush();
        for (const d of this.disks)
            await d.close();
        for (const l of this.lines)
            l.close();
    }
}
//# sourceMappingURL=platform.js.map