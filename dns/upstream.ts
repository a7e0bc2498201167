/**
 * Forwarding to the host's resolvers: the `nameserver` lines of resolv.conf, asked in order, each
 * given `timeoutMs`; the first answer wins, SERVFAIL when none answers. resolv.conf is re-read when
 * its mtime or size changes (checked at most once a second). Our own listening address is never
 * an upstream: a resolv.conf naming weaveDNS itself would otherwise make a query chase its tail.
 */
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as net from 'node:net'
import type { Clock, Logger } from '../router/deps'

export interface Server { host: string; port: number }

/** `nameserver` lines (IPv4 and IPv6), in file order. */
export function parseResolvConf(text: string): Server[] {
  const out: Server[] = []
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line)
    if (m && net.isIP(m[1].replace(/%.*$/, ''))) out.push({ host: m[1], port: 53 })
  }
  return out
}

/** Servers minus ourselves (`self`; a wildcard self excludes the loopback and `isLocal` addresses). */
export function withoutSelf(servers: Server[], self: Server | undefined, isLocal: (host: string) => boolean): Server[] {
  if (!self) return servers
  const wildcard = self.host === '0.0.0.0' || self.host === '::'
  return servers.filter((s) => {
    if (s.port !== self.port) return true
    if (s.host === self.host) return false
    return !(wildcard && (isLocal(s.host) || s.host.startsWith('127.') || s.host === '::1'))
  })
}

export interface UpstreamDeps {
  clock: Clock
  logger: Logger
  resolvConf: string
  timeoutMs: number
  /** Where we listen, to skip ourselves. */
  self(): Server | undefined
  isLocal(host: string): boolean
}

export class Upstream {
  private servers: Server[] = []
  private stamp = ''
  private checkedAt = -Infinity
  constructor(private readonly d: UpstreamDeps) {}

  /** Current upstream servers (re-reading resolv.conf when it changed). */
  list(): Server[] {
    const now = this.d.clock.now()
    if (now - this.checkedAt >= 1000) {
      this.checkedAt = now
      let st: fs.Stats | undefined
      try { st = fs.statSync(this.d.resolvConf) } catch { st = undefined }
      const stamp = st ? `${st.mtimeMs}:${st.size}:${st.ino}` : 'missing'
      if (stamp !== this.stamp) {
        this.stamp = stamp
        let text = ''
        try { text = st ? fs.readFileSync(this.d.resolvConf, 'utf8') : '' } catch { text = '' }
        this.servers = withoutSelf(parseResolvConf(text), this.d.self(), (h) => this.d.isLocal(h))
        this.d.logger.info(`upstream servers from ${this.d.resolvConf}: ${this.servers.map(fmt).join(' ') || 'none'}`)
      }
    }
    return this.servers
  }

  /** Ask each server in turn; undefined when all failed or timed out. */
  async forward(query: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    for (const s of this.list()) {
      const r = await (transport === 'tcp' ? askTcp(s, query, this.d.timeoutMs, this.d.clock) : askUdp(s, query, this.d.timeoutMs, this.d.clock)).catch(() => undefined)
      if (r) return r
    }
    return undefined
  }
}

const fmt = (s: Server) => (s.port === 53 ? s.host : `${s.host}:${s.port}`)

/** One UDP exchange on a fresh socket (its random port keeps answers to different clients apart). */
function askUdp(s: Server, query: Buffer, timeoutMs: number, clock: Clock): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(net.isIPv6(s.host) ? 'udp6' : 'udp4')
    const id = query.readUInt16BE(0)
    let finished = false
    const done = (v: Buffer | undefined) => { if (finished) return; finished = true; cancel(); sock.close(); resolve(v) }
    const cancel = clock.setTimer(timeoutMs, () => done(undefined))
    sock.on('error', () => done(undefined))
    sock.on('message', (msg, rinfo) => {
      // Only the server we asked, answering our id.
      if (rinfo.address === s.host.replace(/%.*$/, '') && msg.length >= 12 && msg.readUInt16BE(0) === id) done(msg)
    })
    sock.send(query, s.port, s.host)
  })
}

function askTcp(s: Server, query: Buffer, timeoutMs: number, clock: Clock): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: s.host, port: s.port })
    let buf = Buffer.alloc(0)
    let finished = false
    const done = (v: Buffer | undefined) => { if (finished) return; finished = true; cancel(); sock.destroy(); resolve(v) }
    const cancel = clock.setTimer(timeoutMs, () => done(undefined))
    sock.on('error', () => done(undefined))
    sock.on('connect', () => {
      const len = Buffer.alloc(2)
      len.writeUInt16BE(query.length)
      sock.write(Buffer.concat([len, query]))
    })
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c])
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)))
    })
    sock.on('end', () => done(undefined))
  })
}
