/**
 * The sockets of weaveDNS: UDP and TCP on one address (the edge; what to answer is answer.ts's).
 * TCP carries RFC 1035 §4.2.2 framing (a 2-byte length before each message). A listener on port
 * 53 is not a web server, but a web page can still make a browser open a TCP connection to it
 * and send an HTTP request: a connection whose first bytes look like one is dropped at once, as is
 * a connection idle for 10 s, and at most `maxTcpConnections` are open.
 */
import * as dgram from 'node:dgram'
import * as net from 'node:net'
import type { Clock, Logger } from '../router/deps'

export type QueryHandler = (query: Buffer, transport: 'udp' | 'tcp', source: string) => Promise<Buffer | undefined> | Buffer | undefined

export interface DnsSocketsConfig { host: string; port: number; maxTcpConnections?: number; tcpIdleMs?: number }

export interface SocketCounters { httpRefused: number; tcpRefused: number; oversize: number }

const HTTP_START = /^(GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|TRACE) /

/** Whether the first bytes of a TCP stream are an HTTP request line rather than a DNS length. */
export function looksLikeHttp(first: Buffer): boolean {
  return HTTP_START.test(first.subarray(0, 8).toString('latin1'))
}

export class DnsSockets {
  readonly counters: SocketCounters = { httpRefused: 0, tcpRefused: 0, oversize: 0 }
  private udp: dgram.Socket | undefined
  private tcp: net.Server | undefined
  private readonly conns = new Set<net.Socket>()

  constructor(private readonly cfg: DnsSocketsConfig, private readonly handler: QueryHandler, private readonly deps: { clock: Clock; logger: Logger }) {}

  address(): { host: string; port: number } | undefined {
    const a = this.udp?.address()
    return a ? { host: a.address, port: a.port } : undefined
  }

  async start(): Promise<void> {
    const udp = dgram.createSocket({ type: net.isIPv6(this.cfg.host) ? 'udp6' : 'udp4' })
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject)
      udp.bind({ address: this.cfg.host, port: this.cfg.port, exclusive: true }, () => { udp.off('error', reject); resolve() })
    })
    this.udp = udp
    udp.on('error', (err) => this.deps.logger.warn(`udp: ${err.message}`))
    udp.on('message', (msg, rinfo) => this.onUdp(msg, rinfo))
    // TCP on the same port UDP got (the port may have been 0 in tests).
    const port = udp.address().port
    const tcp = net.createServer({ pauseOnConnect: false }, (s) => this.onTcp(s))
    tcp.maxConnections = this.cfg.maxTcpConnections ?? 256
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject)
      tcp.listen({ host: this.cfg.host, port, exclusive: true }, () => { tcp.off('error', reject); resolve() })
    })
    tcp.on('drop', () => { this.counters.tcpRefused++ })
    this.tcp = tcp
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy()
    this.conns.clear()
    const udp = this.udp, tcp = this.tcp
    this.udp = undefined
    this.tcp = undefined
    if (udp) await new Promise<void>((r) => udp.close(() => r()))
    if (tcp) await new Promise<void>((r) => tcp.close(() => r()))
  }

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const reply = (out: Buffer | undefined) => { if (out && this.udp) this.udp.send(out, rinfo.port, rinfo.address) }
    const fail = (err: unknown) => this.deps.logger.warn(`query from ${rinfo.address}: ${(err as Error).message}`)
    try {
      const r = this.handler(msg, 'udp', rinfo.address)
      if (r instanceof Promise) r.then(reply, fail)
      else reply(r)
    } catch (err) {
      fail(err)
    }
  }

  private onTcp(s: net.Socket): void {
    this.conns.add(s)
    let buf: Buffer = Buffer.alloc(0)
    let first = true
    let busy = 0
    let cancelIdle = () => {}
    const idle = () => {
      cancelIdle()
      cancelIdle = this.deps.clock.setTimer(this.cfg.tcpIdleMs ?? 10_000, () => s.destroy())
    }
    idle()
    s.on('error', () => s.destroy())
    s.on('close', () => { cancelIdle(); this.conns.delete(s) })
    s.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk
      if (first && buf.length >= 4) {
        first = false
        if (looksLikeHttp(buf)) {
          this.counters.httpRefused++
          s.destroy()
          return
        }
      }
      if (buf.length > 2 + 65535 * 2) { this.counters.oversize++; s.destroy(); return }
      idle()
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0)
        const q = buf.subarray(2, 2 + len)
        buf = buf.subarray(2 + len)
        if (busy >= 16) { this.counters.oversize++; s.destroy(); return } // a pipelining flood
        busy++
        Promise.resolve(this.handler(Buffer.from(q), 'tcp', s.remoteAddress ?? ''))
          .then((out) => {
            if (!out || s.destroyed) return
            const hdr = Buffer.alloc(2)
            hdr.writeUInt16BE(out.length)
            s.write(Buffer.concat([hdr, out]))
          })
          .catch((err: Error) => this.deps.logger.warn(`tcp query: ${err.message}`))
          .finally(() => { busy-- })
      }
    })
  }
}
