/**
 * Every error code tsvmm reports, with the HTTP status the API answers it with and what it means.
 * TsvmmError takes only these codes, so the table cannot miss one; docs/errors.md is generated
 * from it (`node tools/gen-error-docs.mjs`, checked by test/errors.test.ts). Statuses follow
 * Cloud Hypervisor: 400 a bad body or a request invalid in this state, 404 no VM or no route,
 * 409 a conflict, 500 a failure. `status: null`: raised on the client side only (CLI tools),
 * never sent by the API.
 */
export const ERROR_CODES = {
  EINVALIDCONFIG: { status: 400, meaning: 'bad user input: a flag, a config value or an API body field (CLI exit status 2)' },
  EBADREQUEST: { status: 400, meaning: 'the HTTP request is malformed (body not JSON, bad header)' },
  EINVALIDSTATE: { status: 400, meaning: 'the request is invalid in the VM\'s current state (e.g. a snapshot of a running VM: it must be paused)' },
  EINPUTFILE: { status: 400, meaning: 'a file the request named is missing or unusable (kernel, initramfs, disk image)' },
  EKERNELFORMAT: { status: 400, meaning: 'the kernel is neither a bzImage nor an ELF vmlinux tsvmm can boot' },
  EBOOTLAYOUT: { status: 400, meaning: 'the kernel, initramfs and boot tables do not fit in guest RAM' },
  ECMDLINE: { status: 400, meaning: 'the kernel command line is too long or malformed' },
  ESNAPSHOT: { status: 400, meaning: 'a snapshot directory is incomplete, corrupt or of another format version' },
  EGUESTRAM: { status: 400, meaning: 'the guest RAM asked for cannot be given (size, host limits)' },
  EQCOW2: { status: 400, meaning: 'a qcow2 image is corrupt or uses a feature tsvmm does not support' },
  ENOVM: { status: 404, meaning: 'no VM exists (vm.create or vm.restore first)' },
  ENOSNAPSHOT: { status: 404, meaning: 'no snapshot of that name in the catalogue (the message lists the known names)' },
  ENOROUTE: { status: 404, meaning: 'no such API endpoint' },
  EMETHOD: { status: 405, meaning: 'the endpoint does not take this HTTP method' },
  ETIMEOUT: { status: 408, meaning: 'the request was not received in time' },
  ECONFLICT: { status: 409, meaning: 'another request or a block job that conflicts with this one is in progress' },
  EIMAGELOCKED: { status: 409, meaning: 'another process (tsvmm, QEMU, qemu-img) holds the disk image\'s lock' },
  ETOOLARGE: { status: 413, meaning: 'the request body exceeds the size limit' },
  EUPGRADE: { status: 426, meaning: 'a WebSocket endpoint was asked without a WebSocket upgrade' },
  EHEADERS: { status: 431, meaning: 'the request headers are too large' },
  ECHECKPOINT: { status: 500, meaning: 'a disk snapshot or checkpoint failed; the VM keeps running on the images it had' },
  EBLOCK: { status: 500, meaning: 'an I/O failure of a disk image, or a backing chain that cannot be edited as asked' },
  EDEVSTATE: { status: 500, meaning: 'a device\'s saved state in a snapshot is invalid' },
  EVIRTQ: { status: 500, meaning: 'the guest driver broke the virtio queue protocol (the device needs a reset)' },
  EGUESTMEM: { status: 500, meaning: 'an access outside guest RAM' },
  EKVM: { status: 500, meaning: 'a KVM operation failed' },
  ENOKVM: { status: 500, meaning: 'this host cannot run VMs (no /dev/kvm, or no permission on it)' },
  EHOSTMISMATCH: { status: 500, meaning: 'the snapshot needs a host capability this one lacks (e.g. its TSC rate)' },
  EVCPU: { status: 500, meaning: 'a vCPU thread failed (unsupported exit, internal error)' },
  ESYS: { status: 500, meaning: 'a system call failed' },
  EAPISOCKET: { status: 500, meaning: 'the API socket cannot be created (path taken by a live VMM, or not creatable)' },
  ESERIALSOCKET: { status: 400, meaning: 'the `--serial socket=PATH` or `--console socket=PATH` socket cannot be created (path taken by a live process, not a socket, or not creatable)' },
  EVSOCKSOCKET: { status: 400, meaning: 'the `--vsock socket=PATH` socket cannot be created (path taken by a live process, not a socket, or not creatable)' },
  ETAP: { status: 400, meaning: 'a `--net` device\'s TAP cannot be opened or set up (no /dev/net/tun, no CAP_NET_ADMIN, in use by another process, or an fd that is not a TAP with IFF_VNET_HDR)' },
  EINTERNAL: { status: 500, meaning: 'an internal error (a bug: please report it)' },
  EUSAGE: { status: null, meaning: 'bad command line of tsvmm-remote or tsvmm-img (exit status 2)' },
  ECONNECT: { status: null, meaning: 'tsvmm-remote cannot reach the API socket' },
  EHTTP: { status: null, meaning: 'the API answered with an HTTP error that carries no tsvmm error body' },
} as const satisfies Record<string, { status: number | null; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The HTTP status of an error code; codes from outside the table (none should reach it) are 500. */
export function httpStatusForCode(code: string): number {
  return (ERROR_CODES as Record<string, { status: number | null }>)[code]?.status ?? 500;
}

/** The table as markdown, for docs/errors.md. */
export function errorCodesMarkdown(): string {
  const rows = Object.entries(ERROR_CODES).map(([code, e]) => `| \`${code}\` | ${e.status ?? '— (client side)'} | ${e.meaning} |`);
  return ['| code | HTTP status | meaning |', '|---|---|---|', ...rows].join('\n') + '\n';
}
