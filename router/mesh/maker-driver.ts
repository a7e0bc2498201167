/**
 * Drives the connection maker (a pure reducer, connection-maker.ts): tells it what the mesh
 * looks like (`world`), carries out its effects (dial, persist targets) and wakes it when it
 * asked to be woken.
 */
import { HandshakeError, type HandshakeFailure, type MeshTransport, type PeerConnection } from './connection-contract'
import { addrHost, type MakerEffect } from './connection-maker'
import type { MeshCore } from './mesh-core'
import { presentConns } from './topology'

export interface MakerWorld {
  connectedAddrs: Set<string>
  connectedIps: Set<string>
  connectionCount: number
  discovered: string[]
}

/** What the maker needs to know: whom we are connected to, and (with discovery) whom others are. */
/** Addresses we hold connections to: dialled ones, and the IPs of peers that dialled us. */
export function connectedSets(core: MeshCore): { connectedAddrs: Set<string>; connectedIps: Set<string> } {
  const connectedAddrs = new Set<string>()
  const connectedIps = new Set<string>()
  for (const l of core.live.values()) {
    if (l.conn.outbound) connectedAddrs.add(l.conn.remoteAddr)
    else connectedIps.add(addrHost(l.conn.remoteAddr))
    if (l.target) connectedAddrs.add(l.target)
  }
  return { connectedAddrs, connectedIps }
}

export function makerWorld(core: MeshCore): MakerWorld {
  const { config, identity, live, topology } = core
  const { connectedAddrs, connectedIps } = connectedSets(core)
  const discovered = new Set<string>()
  // At the limit discovery dials nothing: skip the walk over every connection in the mesh.
  if (config.discovery && (config.connLimit <= 0 || live.size < config.connLimit)) {
    for (const r of topology.records()) {
      for (const [to, e] of presentConns(r)) {
        // Without a limit (a full mesh), of two peers that learn of each other only the lower
        // name dials: no duplicate connections. With a limit both may, or a newcomer with a
        // high name would wait for peers that are already full.
        if (to === identity.name || live.has(to) || (config.connLimit <= 0 && to < identity.name)) continue
        // Outbound: the address it dialled is where `to` listens; inbound: its IP, our port.
        discovered.add(e.outbound ? e.addr : hostPort(addrHost(e.addr), config.port))
      }
    }
  }
  return { connectedAddrs, connectedIps, connectionCount: live.size, discovered: [...discovered] }
}

export class MakerDriver {
  constructor(
    private readonly core: MeshCore,
    private readonly transport: () => MeshTransport | undefined,
    /** Keep a dialled connection; returns why it was refused. */
    private readonly addConnection: (conn: PeerConnection, target: string) => string | undefined,
  ) {}

  run(): void {
    const { clock, maker, state, timers } = this.core
    if (!state.running) return
    this.carryOut(maker.tick(clock.now(), makerWorld(this.core)))
    const wake = maker.nextWake(clock.now())
    if (wake !== undefined) timers.reschedule('maker-wake', Math.max(0, wake - clock.now()), () => this.run())
  }

  /** Run soon (after the current turn), coalescing repeated requests. */
  soon(): void {
    this.core.timers.schedule('maker', 0, () => this.run())
  }

  carryOut(effects: MakerEffect[]): void {
    for (const e of effects) {
      if (e.kind === 'persist') {
        try {
          this.core.deps.targets?.save(e.direct)
        } catch (err) {
          this.core.log.warn(`cannot save peer targets: ${(err as Error).message}`)
        }
      } else this.dial(e.addr)
    }
  }

  private dial(addr: string): void {
    const { clock, log, maker, state } = this.core
    const transport = this.transport()
    if (!transport) return
    log.debug(`connecting to ${addr}`)
    transport.dial(addr).then(
      (conn) => {
        if (state.stopped) return conn.close('router stopped')
        const refused = this.addConnection(conn, addr)
        if (refused) maker.dialFailed(addr, undefined, refused, clock.now())
        else maker.dialSucceeded(addr)
        this.soon()
      },
      (err: Error) => {
        if (state.stopped) return
        const failure: HandshakeFailure | undefined = err instanceof HandshakeError ? err.failure : undefined
        log.info(`connection to ${addr} failed: ${err.message}`)
        maker.dialFailed(addr, failure, err.message, clock.now())
        this.soon()
      },
    )
  }
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
