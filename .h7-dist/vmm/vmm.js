/**
 * The VMM: owns at most one VM and implements the control-plane contract (controller.ts) for the
 * CLI and the HTTP API. Every state-changing operation runs one at a time; a request that arrives
 * while another is in progress is refused with ECONFLICT rather than queued, as the API promises.
 */
import { createWriteStream, openSync } from 'node:fs';
import { log } from '../util/log.js';
import { ConflictError, InputFileError, InvalidStateError, NoVmError } from './errors.js';
import { Vm } from './vm.js';
import { prewarmVcpuWorkers } from './vcpu-thread.js';
import { restoreVm, snapshotVm } from './persist.js';
import { DiskSnapshotService, } from './checkpoints/service.js';
import { BlockJobManager } from './jobs/manager.js';
export const VERSION = '0.1.0';
/** vCPU worker threads an empty VMM keeps loaded for a warm restore or boot. */
const WARM_VCPU_WORKERS = 2;
/** Event timestamps count from the VMM's start, as Cloud Hypervisor's event monitor does. */
const STARTED_NS = process.hrtime.bigint();
function now() {
    const ns = process.hrtime.bigint() - STARTED_NS;
    return { secs: Number(ns / 1000000000n), nanos: Number(ns % 1000000000n) };
}
export class Vmm {
    options;
    vm;
    config;
    busy;
    listeners = new Set();
    consoleListener;
    serialFile;
    serialFilePath;
    stdinAttached = false;
    api;
    endReported = false;
    /** Disk snapshots and named checkpoints (src/vmm/checkpoints/), over this VMM's VM. */
    diskSnapshots = new DiskSnapshotService({
        vm: () => this.vm,
        emit: (event, properties) => this.emit('vm', event, properties),
        closeVm: async () => {
            if (this.vm !== undefined && this.vm.state !== 'Shutdown')
                await this.teardown(this.vm);
        },
        adoptVm: (vm) => {
            this.vm = vm;
            this.config = vm.config;
            this.endReported = false;
            this.attachStdin(vm);
        },
        hooksFor: (config) => this.hooks(config),
    });
    /** Background block-commit / block-pull jobs (src/vmm/jobs/). */
    blockJobsManager = new BlockJobManager({
        vm: () => this.vm,
        emit: (event, properties) => this.emit('device', event, properties),
        protectedImages: () => this.diskSnapshots.protectedImages(),
    });
    constructor(options) {
        this.options = options;
    }
    // ---- events -------------------------------------------------------------------------------
    emit(source, event, properties = null) {
        const e = { timestamp: now(), source, event, properties };
        for (const l of this.listeners) {
            try {
                l(e);
            }
            catch (err) {
                log.warn(`event listener failed: ${err.message}`);
            }
        }
    }
    subscribe(listener) {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
    }
    // ---- serialisation of state changes -------------------------------------------------------
    async exclusive(what, fn) {
        if (this.busy !== undefined)
            throw new ConflictError(`cannot ${what} while ${this.busy} is in progress; retry when it ends`);
        this.busy = what;
        try {
            return await fn();
        }
        finally {
            this.busy = undefined;
        }
    }
    requireVm() {
        if (this.vm === undefined)
            throw new NoVmError();
        return this.vm;
    }
    // ---- serial port plumbing -----------------------------------------------------------------
    serialOutput(config) {
        switch (config.serial.mode) {
            case 'Tty':
                return (b) => { process.stdout.write(b); };
            case 'File': {
                const path = config.serial.file;
                // A reboot of the same VM keeps appending to the log it already writes.
                if (this.serialFile === undefined || this.serialFilePath !== path) {
                    this.serialFile?.end();
                    // Opened now so a bad path fails the boot instead of losing the console later.
                    let fd;
                    try {
                        fd = openSync(path, 'w');
                    }
                    catch (e) {
                        throw new InputFileError(`cannot open serial file ${path}: ${e.code === 'ENOENT' ? 'no such directory' : e.message}`);
                    }
                    const stream = createWriteStream('', { fd });
                    stream.on('error', (e) => log.error(`serial file ${path}: ${e.message}`));
                    this.serialFile = stream;
                    this.serialFilePath = path;
                }
                const file = this.serialFile;
                return (b) => { file.write(b); };
            }
            case 'Socket':
                return (b) => { this.consoleListener?.(b); };
            case 'Null':
            case 'Off':
                return () => { };
        }
    }
    attachStdin(vm) {
        if (!this.options.stdinIsConsole || vm.config.serial.mode !== 'Tty' || this.stdinAttached)
            return;
        if (!process.stdin.isTTY)
            return;
        this.stdinAttached = true;
        process.stdin.setRawMode(true);
        process.stdin.on('data', (chunk) => this.vm?.platform.serialInput(chunk));
        process.stdin.resume();
    }
    detachStdin() {
        if (!this.stdinAttached)
            return;
        this.stdinAttached = false;
        process.stdin.setRawMode(false);
        process.stdin.pause();
    }
    attachConsole() {
        const vm = this.requireVm();
        if (vm.config.serial.mode !== 'Socket')
            throw new InvalidStateError('the serial port is not in socket mode: start the VM with --serial socket to attach a console');
        if (this.consoleListener !== undefined)
            throw new ConflictError('a console is already attached; detach it first');
        let listener;
        this.consoleListener = (b) => listener?.(b);
        return {
            onOutput: (l) => { listener = l; },
            input: (bytes) => { this.vm?.platform.serialInput(bytes); },
            detach: () => { this.consoleListener = undefined; listener = undefined; },
        };
    }
    // ---- VmmController ------------------------------------------------------------------------
    ping() {
        return { build_version: VERSION, version: VERSION, pid: process.pid, features: ['kvm', 'virtio-blk', 'qcow2', 'snapshot'] };
    }
    info() {
        if (this.config === undefined) {
            // A restore in progress is not "no VM": say so, so clients know to retry.
            if (this.busy === 'vm.restore')
                throw new ConflictError('the VM is being restored; retry when vm.restore completes');
            throw new NoVmError();
        }
        const info = { config: this.config, state: this.vm?.state ?? 'Created', memory_actual_size: this.config.memory.size };
        const jobs = this.blockJobsManager.list();
        if (jobs.length > 0)
            info.block_jobs = jobs;
        return info;
    }
    counters() {
        return this.requireVm().counters();
    }
    hooks(config) {
        return {
            onEnd: (end) => { void this.end(end); },
            onSerialOutput: this.serialOutput(config),
        };
    }
    create(config) {
        return this.exclusive('vm.create', async () => {
            // After vm.shutdown the old configuration may be replaced; a live VM must be shut down first.
            if (this.vm !== undefined && this.vm.state !== 'Shutdown')
                throw new InvalidStateError(`a VM already exists and is ${this.vm.state}: shut it down (vm.shutdown) before creating another`);
            if (this.vm === undefined && this.config !== undefined)
                throw new InvalidStateError('a VM is already created: boot it (vm.boot), or shut it down before creating another');
            this.config = config;
            this.emit('vm', 'created');
        });
    }
    boot() {
        return this.exclusive('vm.boot', async () => {
            if (this.config === undefined)
                throw new NoVmError();
            if (this.vm !== undefined && this.vm.state !== 'Shutdown')
                throw new InvalidStateError(`cannot boot a VM that is ${this.vm.state}`);
            this.emit('vm', 'booting');
            const start = performance.now();
            const vm = await Vm.boot(this.config, this.hooks(this.config));
            this.vm = vm;
            this.endReported = false;
            vm.start();
            this.attachStdin(vm);
            this.emit('vm', 'booted', { duration_ms: performance.now() - start });
        });
    }
    pause() {
        return this.exclusive('vm.pause', async () => {
            const vm = this.requireVm();
            if (vm.state !== 'Running')
                throw new InvalidStateError(`cannot pause a VM that is ${vm.state}`);
            this.emit('vm', 'pausing');
            const start = performance.now();
            await vm.pause();
            this.emit('vm', 'paused', { duration_ms: performance.now() - start });
        });
    }
    resume() {
        return this.exclusive('vm.resume', async () => {
            const vm = this.requireVm();
            if (vm.state !== 'Paused')
                throw new InvalidStateError(`cannot resume a VM that is ${vm.state}`);
            this.emit('vm', 'resuming');
            const start = performance.now();
            await vm.resume();
            this.emit('vm', 'resumed', { duration_ms: performance.now() - start });
        });
    }
    shutdown() {
        return this.exclusive('vm.shutdown', async () => {
            const vm = this.requireVm();
            if (vm.state === 'Shutdown')
                throw new InvalidStateError('the VM is already shut down: boot it (vm.boot) or restore a snapshot into it (vm.restore)');
            await this.teardown(vm);
            this.emit('vm', 'shutdown');
        });
    }
    reboot() {
        return this.exclusive('vm.reboot', async () => {
            const vm = this.requireVm();
            if (vm.state !== 'Running' && vm.state !== 'Paused')
                throw new InvalidStateError(`cannot reboot a VM that is ${vm.state}`);
            this.emit('vm', 'rebooting');
            await this.teardown(vm);
            const next = await Vm.boot(vm.config, this.hooks(vm.config));
            this.vm = next;
            this.endReported = false;
            next.start();
            this.attachStdin(next);
            this.emit('vm', 'rebooted');
        });
    }
    snapshot(req) {
        return this.exclusive('vm.snapshot', async () => {
            const vm = this.requireVm();
            if (vm.state !== 'Paused')
                throw new InvalidStateError(`the VM must be paused to snapshot it (it is ${vm.state}): send vm.pause first`);
            this.emit('vm', 'snapshotting');
            const start = performance.now();
            if (req.disks === true)
                this.blockJobsManager.refuseWhileRunning('take a checkpoint with disks');
            const result = req.disks === true ? await this.diskSnapshots.checkpoint(req.destination_url) : await snapshotVm(vm, req.destination_url);
            this.emit('vm', 'snapshotted', { duration_ms: performance.now() - start, ...result });
        });
    }
    restore(req) {
        return this.exclusive('vm.restore', async () => {
            if (this.vm !== undefined && this.vm.state !== 'Shutdown')
                throw new InvalidStateError('a VM already exists: restore needs an empty VMM');
            this.emit('vm', 'restoring');
            const start = performance.now();
            // A checkpoint with disks restores onto new overlays over its frozen images.
            const vm = await this.diskSnapshots.restoreIfCheckpoint(req) ?? await restoreVm(req, (config) => this.hooks(config));
            this.vm = vm;
            this.config = vm.config;
            this.endReported = false;
            this.attachStdin(vm);
            this.emit('vm', 'restored', { duration_ms: performance.now() - start });
        });
    }
    shutdownVmm() {
        return this.end({ kind: 'requested' });
    }
    // ---- ending --------------------------------------------------------------------------------
    async teardown(vm) {
        await this.blockJobsManager.cancelAll();
        this.detachStdin();
        await vm.close();
    }
    /** Ends the VM (if any) and tells the owner why; the owner decides whether the process exits. */
    async end(end) {
        if (this.endReported)
            return;
        this.endReported = true;
        const events = {
            poweroff: 'power-off', reset: 'reset', triple_fault: 'triple-fault', vcpu_error: 'vcpu-error', signal: 'shutdown', requested: 'shutdown',
        };
        // The guest ended its VM (source vm, with the guest's status or the failing vCPU), or the VMM
        // itself is stopping (source vmm, as Cloud Hypervisor's event monitor reports it).
        const details = end.kind === 'poweroff' ? { status: end.status } : end.kind === 'vcpu_error' ? { vcpu: end.vcpu, message: end.message } : end.kind === 'signal' ? { signal: end.signal } : null;
        this.emit(end.kind === 'signal' || end.kind === 'requested' ? 'vmm' : 'vm', events[end.kind], details);
        if (this.vm !== undefined)
            await this.teardown(this.vm);
        this.options.onVmEnd(end);
    }
    // ---- disk snapshots, checkpoints, block jobs -----------------------------------------------
    snapshotDisk(req) {
        return this.exclusive('vm.snapshot-disk', async () => {
            this.blockJobsManager.refuseWhileRunning('snapshot a disk');
            await this.diskSnapshots.snapshotDisk(req);
        });
    }
    snapshotCreate(req) {
        return this.exclusive('vm.snapshot-create', async () => {
            this.blockJobsManager.refuseWhileRunning('create a snapshot');
            await this.diskSnapshots.create(req);
        });
    }
    snapshotList(req) {
        return this.diskSnapshots.list(req);
    }
    snapshotRevert(req) {
        return this.exclusive('vm.snapshot-revert', async () => {
            this.blockJobsManager.refuseWhileRunning('revert to a snapshot');
            await this.diskSnapshots.revert(req);
        });
    }
    snapshotDelete(req) {
        return this.exclusive('vm.snapshot-delete', async () => {
            this.blockJobsManager.refuseWhileRunning('delete a snapshot');
            await this.diskSnapshots.delete(req);
        });
    }
    lastDiskOperation() {
        return this.diskSnapshots.last ?? null;
    }
    blockCommit(req) {
        return this.exclusive('vm.block-commit', async () => { await this.blockJobsManager.startCommit(req); });
    }
    blockPull(req) {
        return this.exclusive('vm.block-pull', async () => { await this.blockJobsManager.startPull(req); });
    }
    blockJobs() {
        return this.blockJobsManager.list();
    }
    blockJobCancel(req) {
        return this.blockJobsManager.cancel(req.id);
    }
    async serveApi(path) {
        const { startApiServer } = await import('./api/server.js');
        this.api = await startApiServer({ socketPath: path, controller: this });
        // An empty VMM waits for vm.create/vm.restore: have vCPU threads ready so a warm restore
        // does not pay for starting them.
        if (this.vm === undefined)
            prewarmVcpuWorkers(WARM_VCPU_WORKERS);
    }
    /** Releases everything (VM, API socket, serial file). */
    async dispose() {
        this.detachStdin();
        if (this.vm !== undefined)
            await this.vm.close();
        await this.api?.close();
        this.serialFile?.end();
    }
}
//# sourceMappingURL=vmm.js.map