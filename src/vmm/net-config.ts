/**
 * The rules and defaults of a network device's config, in one place for its three sources: `--net`
 * (cli-config.ts), vm.create's `net` entries and those of a snapshot's vm.json (api/validate.ts).
 * Each source turns its own syntax into a NetInput and gets the same NetConfig back: the id
 * (`_net<N>`) and MAC (random) filled in, so vm.info and vm.json report the config the device got.
 */
import { ConfigError } from '../errors.js';
import { defaultNetId, randomMac, type NetConfig } from './config.js';
import { MAC_PATTERN, macBytes } from '../devices/net/virtio-net/persist.js';

/**
 * A host interface name: at most IFNAMSIZ - 1 = 15 bytes, of the characters tsvmm allows (the
 * kernel refuses '/', ':' and white space, and the names "." and "..").
 */
export const TAP_NAME_PATTERN = '^(?!\\.\\.?$)[A-Za-z0-9_.-]{1,15}$';
export const TAP_NAME_MEANS = 'a host interface name: 1-15 characters of A-Z a-z 0-9 _ . - (not . or ..)';
/** A device id: as a disk's in the API, and what `net.ID=` in a restore spec can name. */
export const NET_ID_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
export const NET_ID_MEANS = '1-64 characters of A-Z a-z 0-9 _ . -';
export { MAC_PATTERN };
export const MAC_MEANS = 'a MAC address, six hex octets: xx:xx:xx:xx:xx:xx';
const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
export const IPV4_PATTERN = `^${OCTET}(\\.${OCTET}){3}$`;
export const IPV4_MEANS = 'a dotted IPv4 address, A.B.C.D';
/** The host side's netmask when `ip` comes without one (Cloud Hypervisor's default). */
export const DEFAULT_NET_MASK = '255.255.255.0';
/** Lowest fd an inherited tap may have: 0-2 are stdio. */
const MIN_FD = 3;
const MAX_FD = 0x7fff_ffff;

/** A network device as one source gives it, before checks and defaults. */
export interface NetInput {
  readonly id?: string;
  readonly tap?: string;
  readonly fd?: number;
  readonly mac?: string;
  readonly host_mac?: string;
  readonly ip?: string;
  readonly mask?: string;
}

/** How an error names a field: `--net mac` on the command line; `net[0].mac` in a body, which is also the error's `field`. */
export type NetFieldName = (key: keyof NetInput) => { text: string; field?: string };

export interface NetRules {
  /**
   * Accept an inherited `fd` beside a `tap` name: vm.json may record both (the name the kernel
   * reports for that fd). `--net` takes one or the other.
   */
  tapWithFd?: boolean;
}

function fail(at: { text: string; field?: string }, message: string): never {
  throw new ConfigError(`${at.text}: ${message}`, at.field === undefined ? undefined : { field: at.field });
}

const matches = (pattern: string, value: string): boolean => new RegExp(pattern, 'u').test(value);

function ipv4Number(text: string): number {
  return text.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

/** A netmask's ones are contiguous from the top: its complement is 2^k - 1. */
function contiguousMask(text: string): boolean {
  const inverse = (~ipv4Number(text)) >>> 0;
  return (inverse & (inverse + 1)) === 0;
}

/** The MAC in lower case; a multicast (low bit of the first octet set) or all-zero address is refused: no guest can own it. */
function mac(text: string, at: ReturnType<NetFieldName>): string {
  if (macBytes(text) === undefined) fail(at, `"${text}" must be ${MAC_MEANS}`);
  const lower = text.toLowerCase();
  if ((parseInt(lower.slice(0, 2), 16) & 1) !== 0) fail(at, `"${text}" is a multicast address (low bit of the first octet set): a guest's MAC must be unicast`);
  if (/^(00:){5}00$/.test(lower)) fail(at, '00:00:00:00:00:00 is not a usable MAC address');
  return lower;
}

/**
 * The NetConfig of device `index` (its default id is `_net<index>`): checked, with the MAC given
 * or random (locally administered) and the netmask given or 255.255.255.0 when `ip` is. Neither
 * `tap` nor `fd` is allowed, as in Cloud Hypervisor: the device then gets a new tap of its own.
 */
export function netConfig(input: NetInput, index: number, name: NetFieldName, rules: NetRules = {}): NetConfig {
  const id = input.id ?? defaultNetId(index);
  if (!matches(NET_ID_PATTERN, id)) fail(name('id'), `"${id}" must be ${NET_ID_MEANS}`);
  const { tap, fd, ip } = input;
  if (tap !== undefined && !matches(TAP_NAME_PATTERN, tap)) fail(name('tap'), `"${tap}" must be ${TAP_NAME_MEANS}`);
  if (fd !== undefined) {
    if (!Number.isInteger(fd) || fd < MIN_FD || fd > MAX_FD) fail(name('fd'), `${fd} must be the number of an inherited open tap (${MIN_FD} or more)`);
    if (tap !== undefined && rules.tapWithFd !== true) fail(name('fd'), 'give tap= (a host interface to open) or fd= (an inherited open tap), not both');
  }
  if (ip !== undefined && !matches(IPV4_PATTERN, ip)) fail(name('ip'), `"${ip}" must be ${IPV4_MEANS}`);
  let mask = input.mask;
  if (mask !== undefined) {
    if (ip === undefined) fail(name('mask'), 'only with ip (the netmask of the host side\'s address)');
    if (!matches(IPV4_PATTERN, mask)) fail(name('mask'), `"${mask}" must be a dotted IPv4 netmask, A.B.C.D`);
    if (!contiguousMask(mask)) fail(name('mask'), `"${mask}" is not a netmask (its one bits must be contiguous, e.g. 255.255.255.0)`);
  } else if (ip !== undefined) {
    mask = DEFAULT_NET_MASK;
  }
  return {
    id,
    ...(tap === undefined ? {} : { tap }),
    ...(fd === undefined ? {} : { fd }),
    mac: input.mac === undefined ? randomMac() : mac(input.mac, name('mac')),
    ...(input.host_mac === undefined ? {} : { host_mac: mac(input.host_mac, name('host_mac')) }),
    ...(ip === undefined ? {} : { ip }),
    ...(mask === undefined ? {} : { mask }),
  };
}

/**
 * Device ids are one name space (vm.counters, vm.info, restore overrides): each network device's
 * id must be its own, not another network device's nor one of `others` (id → whose, e.g.
 * `"_disk0" → "a disk's"`).
 */
export function checkNetIds(nets: readonly NetConfig[], others: ReadonlyMap<string, string>, name: (index: number) => ReturnType<NetFieldName>): void {
  const seen = new Set<string>();
  nets.forEach((n, i) => {
    const whose = others.get(n.id);
    if (whose !== undefined) fail(name(i), `"${n.id}" is ${whose} id`);
    if (seen.has(n.id)) fail(name(i), `"${n.id}" is used by more than one network device`);
    seen.add(n.id);
  });
}

/** The host interface name of a restore override (`net.ID=TAP`, network_overrides' host_dev_name). */
export function checkTapName(tap: string, what: string): string {
  if (!matches(TAP_NAME_PATTERN, tap)) throw new ConfigError(`${what}: "${tap}" must be ${TAP_NAME_MEANS}`);
  return tap;
}
