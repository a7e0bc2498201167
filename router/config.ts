/**
 * The daemon's configuration: flags and environment in, one frozen WeaverConfig out.
 * Nothing under router/, ipam/ or proxy/ reads process.env; they get fields of this.
 * Every flag lives in FLAGS with its default and a one-line reason, so `weave launch --help`
 * and the parser can never disagree.
 */
import * as os from 'node:os'
import * as path from 'node:path'
import { parseUserPeerName } from './peer-name'
import { parseTrustedSubnets } from './trusted-subnets'

export interface WeaverConfig {
  /** Peers to connect to (the launch arguments), host[:port]. */
  readonly peers: readonly string[]
  readonly stateDir: string
  readonly runDir: string
  /** The control API's TCP address; the unix socket `${runDir}/api.sock` is always served too. */
  readonly httpAddr: { readonly host: string; readonly port: number } | undefined
  /** Another address serving /metrics alone (Weave's status port, e.g. 0.0.0.0:6782); undefined = only on the API. */
  readonly metricsAddr?: { readonly host: string; readonly port: number }
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error'
  readonly nickname: string
  /** `--name`: this peer's name (MAC form); undefined = the one saved in the state dir. */
  readonly name?: string
  /** `--no-restart`: `weave launch` runs the daemon without the supervisor that restarts it. */
  readonly noRestart?: boolean
  /**
   * Peer targets to start with: `stored+launch` (the stored ones plus launch peers: `--resume`, a
   * launch without peers, or a restart by the supervisor) or `launch` (explicit peers replace them).
   */
  readonly targetsFrom?: 'stored+launch' | 'launch'
  /** `--no-multicast-route`: containers the proxy attaches get no 224.0.0.0/4 route. */
  readonly noMulticastRoute?: boolean
  /** Shared secret for encrypted connections; undefined = no encryption. */
  readonly password: string | undefined
  /** `--trusted-subnets`: peers there (mutually) get no data encryption; normalised CIDRs. */
  readonly trustedSubnets?: readonly string[]
  readonly noDiscovery: boolean
  readonly connLimit: number
  readonly meshHost: string
  readonly meshPort: number
  readonly ipallocRange: string
  readonly ipallocDefaultSubnet: string | undefined
  readonly ipallocInit: string | undefined
  readonly mtu: number
  /** Run the Docker API proxy. */
  readonly proxy: boolean
  readonly dockerApi: string
  readonly proxyListen: readonly string[]
  /**
   * `--tls`/`--tlsverify`: the proxy's TCP listener serves TLS with these PEM files (Docker's
   * defaults: {ca,cert,key}.pem in $DOCKER_CERT_PATH or ~/.docker); undefined = plain.
   */
  readonly proxyTls?: { readonly verify: boolean; readonly caCert: string; readonly cert: string; readonly key: string }
  readonly noDefaultIpalloc: boolean
  readonly rewriteInspect: boolean
  /** Serve the Docker network plugin (driver and IPAM driver `weave`). */
  readonly plugin: boolean
  /** Its unix socket; dockerd finds plugins under /run/docker/plugins. */
  readonly pluginSocket: string
  /** How long a container start through the proxy waits for its address and ethwe. */
  readonly attachTimeoutMs: number
  /** Which data planes may be used. */
  readonly noFastdp: boolean
  /** Let fastdp use the userspace OVS datapath when the kernel has no openvswitch module (slower than sleeve). */
  readonly fastdpUserspace: boolean
  /** OVSDB server for fastdp (`unix:PATH` or `tcp:IP:PORT`). */
  readonly ovsdb: string
  /** Where ovs-vswitchd keeps its bridges' management sockets; undefined = next to the OVSDB socket. */
  readonly ovsRundir: string | undefined
  /** Encrypted fastdp: a new ESP key epoch per direction this often (optional for hand-made configs). */
  readonly espRotateMs?: number
  /** weaveDNS (optional fields: hand-made configs in tests may leave them out; see dnsConfigOf). */
  readonly noDns?: boolean
  readonly dnsDomain?: string
  /** `HOST:PORT`, or `auto` (the docker bridge's address, as Weave). */
  readonly dnsListenAddress?: string
  readonly dnsTtl?: number
  readonly dnsFallbackTimeoutMs?: number
  readonly resolvConf?: string
  readonly dnsRateLimit?: number
  /** Proxy: naming and resolver of the containers it creates. */
  readonly hostnameFromLabel?: string
  readonly hostnameMatch?: string
  readonly hostnameReplacement?: string
  readonly rewriteHosts?: boolean
  readonly withoutDns?: boolean
}

export class ConfigError extends Error {}

type Kind = 'string' | 'int' | 'bool' | 'list'
/** Flags read into other config fields (the proxy's TLS files become proxyTls). */
type RawOnlyKey = 'tls' | 'tlsverify' | 'tlscacert' | 'tlscert' | 'tlskey'

interface Flag {
  flag: string
  key: keyof WeaverConfig | RawOnlyKey
  kind: Kind
  env?: string
  help: string
  /** A bool flag that sets false (`--no-proxy`, `--no-rewrite-hosts`). */
  negate?: boolean
}

/** Defaults, each with its reason. */
const DEFAULTS = {
  stateDir: '/var/lib/weave', // as Weave: state survives reboots
  runDir: '/run/weave', // as Weave: runtime files vanish on reboot
  httpAddr: '127.0.0.1:6784', // Weave's status port; loopback only, never exposed
  logLevel: 'info',
  connLimit: 200, // Weave's default: a full mesh of 200 hosts
  meshHost: '0.0.0.0', // peers must reach us on the underlay
  meshPort: 6783, // Weave's control port
  ipallocRange: '10.32.0.0/12', // Weave's default range
  mtu: 1376, // Weave's default: room for encapsulation inside a 1500-byte underlay
  dockerApi: 'unix:///var/run/docker.sock',
  pluginSocket: '/run/docker/plugins/weave.sock', // where dockerd looks for a plugin named weave
  attachTimeoutS: 60, // IPAM may be awaiting consensus while peers start; then `docker run` says so
  ovsdb: 'unix:/var/run/openvswitch/db.sock', // where Debian's openvswitch-switch serves it
  espRotateS: 900, // short key lives without churn; tests shorten it to see a rotation
  dnsDomain: 'weave.local.', // Weave's
  dnsListenAddress: 'auto', // Weave's: the docker bridge's address, port 53
  dnsTtl: 1, // what Weave's code does (its docs said 30): a removed name is forgotten by clients at once
  dnsFallbackTimeoutMs: 5000, // Weave's upstream timeout
  resolvConf: '/etc/resolv.conf',
  dnsRateLimit: 2000, // queries/s per client address: far above a resolver's need, far below starving others
} as const

export const FLAGS: readonly Flag[] = [
  { flag: '--state-dir', key: 'stateDir', kind: 'string', env: 'WEAVE_STATE_DIR', help: `state directory (default ${DEFAULTS.stateDir})` },
  { flag: '--run-dir', key: 'runDir', kind: 'string', env: 'WEAVE_RUN_DIR', help: `runtime directory (default ${DEFAULTS.runDir})` },
  { flag: '--http-addr', key: 'httpAddr', kind: 'string', env: 'WEAVE_HTTP_ADDR', help: `API address host:port, or "off" (default ${DEFAULTS.httpAddr})` },
  { flag: '--metrics-addr', key: 'metricsAddr', kind: 'string', env: 'WEAVE_METRICS_ADDR', help: 'also serve /metrics alone on host:port, e.g. 0.0.0.0:6782 (default: only on the API address)' },
  { flag: '--log-level', key: 'logLevel', kind: 'string', env: 'WEAVE_LOG_LEVEL', help: 'debug, info, warn or error (default info)' },
  { flag: '--nickname', key: 'nickname', kind: 'string', help: 'nickname shown to peers (default: hostname)' },
  { flag: '--name', key: 'name', kind: 'string', help: 'peer name, MAC form (aa:bb:cc:dd:ee:ff, or with :: as in ::1) (default: made once, kept in the state dir)' },
  { flag: '--no-multicast-route', key: 'noMulticastRoute', kind: 'bool', help: 'no 224.0.0.0/4 route in containers the proxy attaches' },
  { flag: '--no-restart', key: 'noRestart', kind: 'bool', help: 'do not restart the router when it dies (default: a supervisor restarts it until weave stop)' },
  { flag: '--resume', key: 'targetsFrom', kind: 'bool', help: 'connect to the peers stored by the last run (peers named on the command line replace them)' },
  { flag: '--password', key: 'password', kind: 'string', env: 'WEAVE_PASSWORD', help: 'encrypt all traffic with this shared secret' },
  { flag: '--trusted-subnets', key: 'trustedSubnets', kind: 'string', help: 'CIDR,...: no data encryption (sleeve in clear, fastdp without ESP) to peers in these subnets that trust ours too; the mesh connection stays encrypted' },
  { flag: '--no-discovery', key: 'noDiscovery', kind: 'bool', help: 'connect only to peers named explicitly' },
  { flag: '--conn-limit', key: 'connLimit', kind: 'int', help: `maximum number of connections (default ${DEFAULTS.connLimit})` },
  { flag: '--host', key: 'meshHost', kind: 'string', help: `address to listen on for peers (default ${DEFAULTS.meshHost})` },
  { flag: '--port', key: 'meshPort', kind: 'int', help: `TCP/UDP port for peers (default ${DEFAULTS.meshPort})` },
  { flag: '--ipalloc-range', key: 'ipallocRange', kind: 'string', help: `range of container addresses (default ${DEFAULTS.ipallocRange}); "" turns IP allocation off (explicit addresses only)` },
  { flag: '--ipalloc-default-subnet', key: 'ipallocDefaultSubnet', kind: 'string', help: 'subnet for containers without WEAVE_CIDR (default: the range)' },
  { flag: '--ipalloc-init', key: 'ipallocInit', kind: 'string', help: 'consensus[=N] | seed=PEER,... | observer' },
  { flag: '--mtu', key: 'mtu', kind: 'int', env: 'WEAVE_MTU', help: `MTU of the weave network (default ${DEFAULTS.mtu})` },
  { flag: '--proxy', key: 'proxy', kind: 'bool', help: 'run the Docker API proxy (default: on when the Docker socket exists)' },
  { flag: '--no-proxy', key: 'proxy', kind: 'bool', negate: true, help: 'do not run the Docker API proxy' },
  { flag: '--docker-api', key: 'dockerApi', kind: 'string', env: 'DOCKER_HOST', help: `Docker API to proxy (default ${DEFAULTS.dockerApi})` },
  { flag: '--proxy-listen', key: 'proxyListen', kind: 'list', help: 'extra proxy address: one tcp://HOST[:PORT] (port 12375, loopback by default), any number of unix:///PATH (repeatable); the run dir\'s weave.sock is always served' },
  { flag: '-H', key: 'proxyListen', kind: 'list', help: 'as --proxy-listen (Weave\'s proxy syntax: -H tcp://0.0.0.0:12375 -H unix:///var/run/weave/weave.sock)' },
  { flag: '--tls', key: 'tls', kind: 'bool', help: 'proxy: serve the TCP listener (-H tcp://…) over TLS with --tlscert/--tlskey' },
  { flag: '--tlsverify', key: 'tlsverify', kind: 'bool', help: 'proxy: TLS, and accept only clients with a certificate signed by --tlscacert' },
  { flag: '--tlscacert', key: 'tlscacert', kind: 'string', help: 'proxy: CA of client certificates (default ca.pem in $DOCKER_CERT_PATH or ~/.docker)' },
  { flag: '--tlscert', key: 'tlscert', kind: 'string', help: 'proxy: TLS certificate (default cert.pem, as --tlscacert)' },
  { flag: '--tlskey', key: 'tlskey', kind: 'string', help: 'proxy: TLS key (default key.pem, as --tlscacert)' },
  { flag: '--no-default-ipalloc', key: 'noDefaultIpalloc', kind: 'bool', help: 'leave containers without WEAVE_CIDR alone' },
  { flag: '--rewrite-inspect', key: 'rewriteInspect', kind: 'bool', help: 'show the weave address in docker inspect' },
  { flag: '--plugin', key: 'plugin', kind: 'bool', help: 'serve the Docker network plugin (default: on when the Docker socket exists)' },
  { flag: '--no-plugin', key: 'plugin', kind: 'bool', negate: true, help: 'do not serve the Docker network plugin' },
  { flag: '--plugin-socket', key: 'pluginSocket', kind: 'string', env: 'WEAVE_PLUGIN_SOCKET', help: `the plugin's unix socket (default ${DEFAULTS.pluginSocket})` },
  { flag: '--attach-timeout', key: 'attachTimeoutMs', kind: 'int', help: `seconds a docker start waits for an address and ethwe (default ${DEFAULTS.attachTimeoutS})` },
  { flag: '--no-fastdp', key: 'noFastdp', kind: 'bool', env: 'WEAVE_NO_FASTDP', help: 'use sleeve only, never Open vSwitch or the kernel vxlan path' },
  { flag: '--fastdp-userspace', key: 'fastdpUserspace', kind: 'bool', env: 'WEAVE_FASTDP_USERSPACE', help: 'fastdp on the userspace OVS datapath when the kernel has no openvswitch module (else the kernel vxlan path)' },
  { flag: '--ovsdb', key: 'ovsdb', kind: 'string', env: 'WEAVE_OVSDB', help: `OVSDB server for fastdp (default ${DEFAULTS.ovsdb})` },
  { flag: '--esp-rotate', key: 'espRotateMs', kind: 'int', env: 'WEAVE_ESP_ROTATE', help: `seconds between ESP key rotations of encrypted fastdp (default ${DEFAULTS.espRotateS})` },
  { flag: '--ovs-rundir', key: 'ovsRundir', kind: 'string', env: 'OVS_RUNDIR', help: 'run directory of ovs-vswitchd (default: the OVSDB socket\'s directory)' },
  { flag: '--no-dns', key: 'noDns', kind: 'bool', help: 'do not run weaveDNS' },
  { flag: '--dns-domain', key: 'dnsDomain', kind: 'string', help: `weaveDNS domain (default ${DEFAULTS.dnsDomain})` },
  { flag: '--dns-listen-address', key: 'dnsListenAddress', kind: 'string', help: 'weaveDNS address HOST:PORT (default: the docker bridge address, port 53)' },
  { flag: '--dns-ttl', key: 'dnsTtl', kind: 'int', help: `TTL of weaveDNS answers in seconds (default ${DEFAULTS.dnsTtl})` },
  { flag: '--dns-fallback-timeout', key: 'dnsFallbackTimeoutMs', kind: 'int', help: `milliseconds each upstream DNS server gets (default ${DEFAULTS.dnsFallbackTimeoutMs})` },
  { flag: '--resolv-conf', key: 'resolvConf', kind: 'string', help: `file naming the upstream DNS servers (default ${DEFAULTS.resolvConf})` },
  { flag: '--dns-rate-limit', key: 'dnsRateLimit', kind: 'int', help: `DNS queries per second one client may send, 0 = unlimited (default ${DEFAULTS.dnsRateLimit})` },
  { flag: '--hostname-from-label', key: 'hostnameFromLabel', kind: 'string', help: 'proxy: name containers after this label\'s value' },
  { flag: '--hostname-match', key: 'hostnameMatch', kind: 'string', help: 'proxy: regular expression applied to container names (default ^/?(.*))' },
  { flag: '--hostname-replacement', key: 'hostnameReplacement', kind: 'string', help: 'proxy: replacement for --hostname-match (default $1)' },
  { flag: '--rewrite-hosts', key: 'rewriteHosts', kind: 'bool', help: 'proxy: /etc/hosts names the weave address (default on)' },
  { flag: '--no-rewrite-hosts', key: 'rewriteHosts', kind: 'bool', negate: true, help: 'proxy: leave Docker\'s /etc/hosts' },
  { flag: '--without-dns', key: 'withoutDns', kind: 'bool', help: 'proxy: leave containers\' resolver settings alone' },
]

export interface ParseOptions {
  /** Whether the Docker socket exists, to decide the proxy default. */
  dockerSocketExists?: (path: string) => boolean
}

/** Parse daemon arguments (everything after `weave launch`) and the environment. */
export function parseDaemonArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, opts: ParseOptions = {}): WeaverConfig {
  const raw: Record<string, string | boolean | string[]> = {}
  const peers: string[] = []
  for (const f of FLAGS) {
    if (f.env && env[f.env] !== undefined && env[f.env] !== '') raw[f.key] = env[f.env] as string
  }
  // Set by router/supervisor.ts when it starts the daemon again after a death.
  if (env.WEAVE_SUPERVISED_RESTART === '1') raw.supervisedRestart = true
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (!arg.startsWith('-')) {
      peers.push(validatePeerAddress(arg))
      continue
    }
    const eq = arg.indexOf('=')
    const name = eq >= 0 ? arg.slice(0, eq) : arg
    const flag = FLAGS.find((f) => f.flag === name)
    if (!flag) throw new ConfigError(`unknown flag ${name} (see weave launch --help)`)
    if (flag.kind === 'bool') {
      if (eq >= 0) throw new ConfigError(`flag ${name} takes no value`)
      raw[flag.key] = !flag.negate
      continue
    }
    let value: string
    if (eq >= 0) value = arg.slice(eq + 1)
    else {
      if (i + 1 >= argv.length) throw new ConfigError(`flag ${name} needs a value`)
      value = argv[++i]
    }
    if (flag.kind === 'list') raw[flag.key] = [...((raw[flag.key] as string[] | undefined) ?? []), value]
    else raw[flag.key] = value
  }
  return build(raw, peers, opts, env)
}

/** Docker's TLS flags: --tlsverify implies --tls; files default to $DOCKER_CERT_PATH or ~/.docker. */
function proxyTlsFlags(raw: Record<string, string | boolean | string[]>, env: Readonly<Record<string, string | undefined>>): WeaverConfig['proxyTls'] {
  if (raw.tls !== true && raw.tlsverify !== true) return undefined
  const dir = env.DOCKER_CERT_PATH || path.join(os.homedir(), '.docker')
  const file = (k: string, name: string) => (typeof raw[k] === 'string' && raw[k] !== '' ? raw[k] : path.join(dir, name))
  return Object.freeze({ verify: raw.tlsverify === true, caCert: file('tlscacert', 'ca.pem'), cert: file('tlscert', 'cert.pem'), key: file('tlskey', 'key.pem') })
}

function build(raw: Record<string, string | boolean | string[]>, peers: string[], opts: ParseOptions, env: Readonly<Record<string, string | undefined>>): WeaverConfig {
  const str = (k: keyof WeaverConfig) => raw[k] as string | undefined
  const int = (k: keyof WeaverConfig, def: number, min: number, max: number) => {
    const v = str(k)
    if (v === undefined) return def
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new ConfigError(`${k}: "${v}" is not a number in ${min}..${max}`)
    return Number(v)
  }
  const logLevel = str('logLevel') ?? DEFAULTS.logLevel
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new ConfigError(`log level "${logLevel}" is not one of debug, info, warn, error`)
  const dockerApi = str('dockerApi') ?? DEFAULTS.dockerApi
  const dockerExists = opts.dockerSocketExists ?? (() => false)
  const proxy = raw.proxy === undefined ? dockerApi.startsWith('unix://') && dockerExists(dockerApi.slice('unix://'.length)) : (raw.proxy as boolean)
  const cfg: WeaverConfig = {
    peers,
    stateDir: str('stateDir') ?? DEFAULTS.stateDir,
    runDir: str('runDir') ?? DEFAULTS.runDir,
    httpAddr: parseHttpAddr(str('httpAddr') ?? DEFAULTS.httpAddr),
    metricsAddr: str('metricsAddr') === undefined || str('metricsAddr') === 'off' ? undefined : parseHttpAddr(str('metricsAddr')!, 'metrics'),
    logLevel: logLevel as WeaverConfig['logLevel'],
    nickname: str('nickname') ?? os.hostname(),
    name: peerNameFlag(str('name')),
    noMulticastRoute: raw.noMulticastRoute === true,
    noRestart: raw.noRestart === true,
    // A restart by the supervisor resumes what `weave connect` added since the launch.
    targetsFrom: peers.length > 0 && raw.supervisedRestart !== true ? 'launch' : 'stored+launch',
    password: str('password'),
    trustedSubnets: trustedSubnetsFlag(str('trustedSubnets')),
    noDiscovery: raw.noDiscovery === true,
    connLimit: int('connLimit', DEFAULTS.connLimit, 0, 100000),
    meshHost: str('meshHost') ?? DEFAULTS.meshHost,
    meshPort: int('meshPort', DEFAULTS.meshPort, 1, 65535),
    ipallocRange: str('ipallocRange') ?? DEFAULTS.ipallocRange,
    ipallocDefaultSubnet: str('ipallocDefaultSubnet'),
    ipallocInit: str('ipallocInit'),
    mtu: int('mtu', DEFAULTS.mtu, 576, 65535),
    proxy,
    dockerApi,
    proxyListen: (raw.proxyListen as string[] | undefined) ?? [],
    proxyTls: proxyTlsFlags(raw, env),
    // Without IPAM (--ipalloc-range "") the proxy attaches only containers with an explicit WEAVE_CIDR.
    noDefaultIpalloc: raw.noDefaultIpalloc === true || raw.ipallocRange === '',
    rewriteInspect: raw.rewriteInspect === true,
    plugin: raw.plugin === undefined ? dockerApi.startsWith('unix://') && dockerExists(dockerApi.slice('unix://'.length)) : (raw.plugin as boolean),
    pluginSocket: str('pluginSocket') ?? DEFAULTS.pluginSocket,
    attachTimeoutMs: int('attachTimeoutMs', DEFAULTS.attachTimeoutS, 1, 3600) * 1000,
    // the flag sets true; WEAVE_NO_FASTDP is on unless empty, 0, false or no
    noFastdp: raw.noFastdp === true || (typeof raw.noFastdp === 'string' && !/^(0|false|no)$/i.test(raw.noFastdp)),
    fastdpUserspace: raw.fastdpUserspace === true || (typeof raw.fastdpUserspace === 'string' && !/^(0|false|no|)$/i.test(raw.fastdpUserspace)),
    ovsdb: str('ovsdb') ?? DEFAULTS.ovsdb,
    ovsRundir: str('ovsRundir'),
    espRotateMs: int('espRotateMs', DEFAULTS.espRotateS, 1, 86400) * 1000,
    noDns: raw.noDns === true,
    dnsDomain: str('dnsDomain') ?? DEFAULTS.dnsDomain,
    dnsListenAddress: str('dnsListenAddress') ?? DEFAULTS.dnsListenAddress,
    dnsTtl: int('dnsTtl', DEFAULTS.dnsTtl, 0, 86400),
    dnsFallbackTimeoutMs: int('dnsFallbackTimeoutMs', DEFAULTS.dnsFallbackTimeoutMs, 1, 60_000),
    resolvConf: str('resolvConf') ?? DEFAULTS.resolvConf,
    dnsRateLimit: int('dnsRateLimit', DEFAULTS.dnsRateLimit, 0, 10_000_000),
    hostnameFromLabel: str('hostnameFromLabel'),
    hostnameMatch: str('hostnameMatch'),
    hostnameReplacement: str('hostnameReplacement'),
    rewriteHosts: raw.rewriteHosts !== false,
    withoutDns: raw.withoutDns === true,
  }
  validateDns(cfg)
  return Object.freeze(cfg)
}

function validateDns(cfg: WeaverConfig): void {
  if (cfg.hostnameMatch !== undefined) {
    try { new RegExp(cfg.hostnameMatch) } catch (err) { throw new ConfigError(`--hostname-match: ${(err as Error).message}`) }
  }
  const l = cfg.dnsListenAddress
  if (l && l !== 'auto') {
    const m = /^(.+):(\d+)$/.exec(l)
    if (!m || Number(m[2]) > 65535) throw new ConfigError(`--dns-listen-address "${l}" is not HOST:PORT`)
  }
  if (cfg.dnsDomain && !/^([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)+$/i.test(cfg.dnsDomain.endsWith('.') ? cfg.dnsDomain : cfg.dnsDomain + '.')) {
    throw new ConfigError(`--dns-domain "${cfg.dnsDomain}" is not a DNS domain`)
  }
}

function trustedSubnetsFlag(v: string | undefined): readonly string[] {
  try {
    return Object.freeze([...parseTrustedSubnets(v).cidrs])
  } catch (err) {
    throw new ConfigError(`--trusted-subnets: ${(err as Error).message}`)
  }
}

function peerNameFlag(v: string | undefined): string | undefined {
  if (v === undefined) return undefined
  const n = parseUserPeerName(v)
  if (!n) throw new ConfigError(`--name "${v}" is not a peer name: want a MAC form such as 02:00:00:00:00:01, or with :: as in ::1`)
  return n
}

function parseHttpAddr(v: string, what = 'API'): WeaverConfig['httpAddr'] {
  if (v === 'off') return undefined
  const m = /^(.*):(\d+)$/.exec(v)
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`${what} address "${v}" is not host:port`)
  return { host: m[1] || '127.0.0.1', port: Number(m[2]) }
}

/** A launch peer is host or host:port; anything with spaces or slashes is a typo, not a peer. */
function validatePeerAddress(p: string): string {
  if (!/^[A-Za-z0-9.\-_:[\]]+$/.test(p)) throw new ConfigError(`"${p}" is not a peer address (host or host:port)`)
  return p
}

/** The help text of `weave launch`, generated from FLAGS. */
export function launchHelp(): string {
  const width = Math.max(...FLAGS.map((f) => f.flag.length + (f.kind === 'bool' ? 0 : 6)))
  const lines = FLAGS.map((f) => {
    const name = f.kind === 'bool' ? f.flag : `${f.flag} VALUE`
    const env = f.env ? ` [$${f.env}]` : ''
    return `  ${name.padEnd(width)}  ${f.help}${env}`
  })
  return `Usage: weave launch [flags] [PEER...]\n\nStarts the weave router on this host, detached, connecting to each PEER (host[:port]).\n\nFlags:\n${lines.join('\n')}\n`
}
