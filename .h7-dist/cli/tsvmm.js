#!/usr/bin/env node
/**
 * Entry point of `tsvmm`. Starting a vCPU worker thread (which loads koffi and the KVM wrappers)
 * takes tens of milliseconds, as does loading the CLI (yargs): start the worker first so the two
 * load in parallel, then load and run the CLI (tsvmm-main.ts).
 */
import { prewarmVcpuWorkers } from '../vmm/vcpu-thread.js';
prewarmVcpuWorkers(1);
const { main } = await import('./tsvmm-main.js');
await main();
//# sourceMappingURL=tsvmm.js.map