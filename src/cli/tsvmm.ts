#!/usr/bin/env node
/**
 * Entry point of `tsvmm`. Starting a vCPU worker thread (which loads koffi and the KVM wrappers)
 * takes tens of milliseconds, as does loading the CLI (yargs): start the worker first so the two
 * load in parallel, then load and run the CLI (tsvmm-main.ts).
 */
import { setFlagsFromString } from 'node:v8';

// An empty VMM (an API socket, nothing to boot or restore yet) waits for vm.restore or
// vm.create, and users keep one running precisely so that those are fast. V8 compiles each
// function on its first call, which on the restore path costs about as much as the restore
// itself: such a VMM compiles its code as it loads it instead (~65 ms more start-up, half the
// warm-restore latency; bench/snapshot-bench.mjs).
const args = process.argv.slice(2);
const has = (flag: string): boolean => args.some((a) => a === flag || a.startsWith(`${flag}=`));
if (has('--api-socket') && !has('--kernel') && !has('--restore')) setFlagsFromString('--no-lazy');

// Imported only now, so that the flag above applies to every module of tsvmm.
const { prewarmVcpuWorkers } = await import('../vmm/vcpu-thread.js');
prewarmVcpuWorkers(1);
const { main } = await import('./tsvmm-main.js');
await main();
