/**
 * What the CNI specification fixes: the versions this plugin speaks, the error codes and the
 * shapes of results and errors per version. Pure; see
 * https://github.com/containernetworking/cni/blob/main/SPEC.md (1.0.0) and its 0.3.x/0.4.0 tags.
 */

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number]

/** Well-known error codes (SPEC.md "Error"); 100 and up are this plugin's own. */
export const ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  CONTAINER_UNKNOWN: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** The router refused or failed the operation; the message is the router's. */
  ROUTER_FAILED: 100,
  /** CHECK found the pod's interface or addresses not as ADD left them. */
  CHECK_FAILED: 101,
} as const

/** A failure the plugin reports as the spec's error JSON on stdout, exiting non-zero. */
export class CniError extends Error {
  constructor(readonly code: number, message: string, readonly details?: string) {
    super(message)
    this.name = 'CniError'
  }
}

export function isSupported(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v)
}

/** The error JSON; `cniVersion` is the conf's when it is one we speak, else our newest. */
export function formatError(err: CniError, version: string | undefined): string {
  const out: Record<string, unknown> = { cniVersion: isSupported(version) ? version : '1.0.0', code: err.code, msg: err.message }
  if (err.details) out.details = err.details
  return JSON.stringify(out)
}

export function formatVersionInfo(confVersion: string | undefined): string {
  return JSON.stringify({ cniVersion: isSupported(confVersion) ? confVersion : '1.0.0', supportedVersions: SUPPORTED_VERSIONS })
}

export interface AddOutcome {
  /** Host end of the pair (no sandbox) and the pod's interface. */
  hostVeth: string
  ifname: string
  mac: string
  netns: string
  /** `a.b.c.d/n` each, on the pod's interface. */
  addresses: string[]
  gateway?: string
  routes: Array<{ dst: string; gw?: string }>
}

/**
 * ADD's result in the conf's version. 0.3.x and 0.4.0 carry `version: "4"` on each IP; 1.0.0
 * dropped that field. Interface 0 is the host end, 1 the pod's, which the IPs point at.
 */
export function formatResult(version: CniVersion, r: AddOutcome): string {
  const legacy = version !== '1.0.0'
  return JSON.stringify({
    cniVersion: version,
    interfaces: [
      { name: r.hostVeth },
      { name: r.ifname, mac: r.mac, sandbox: r.netns },
    ],
    ips: r.addresses.map((address) => ({
      ...(legacy ? { version: '4' } : {}),
      address,
      ...(r.gateway && inSubnet(r.gateway, address) ? { gateway: r.gateway } : {}),
      interface: 1,
    })),
    routes: r.routes.map((x) => (x.gw ? { dst: x.dst, gw: x.gw } : { dst: x.dst })),
    dns: {},
  })
}

/** Whether `ip` lies in the subnet of `cidr` (a gateway is named only where it is on-link). */
export function inSubnet(ip: string, cidr: string): boolean {
  const [a, p] = cidr.split('/')
  const n = (s: string) => s.split('.').reduce((acc, o) => acc * 256 + Number(o), 0)
  const prefix = Number(p)
  const size = 2 ** (32 - prefix)
  return Math.floor(n(ip) / size) === Math.floor(n(a) / size)
}
