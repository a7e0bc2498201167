/**
 * The overlay hello, per mesh connection: our sleeve UDP port and, with a password, an ephemeral
 * X25519 public key (sleeve-kx), the sleeve ciphers we can do, our fastdp offer and, for
 * encrypted fastdp, an ESP nonce. Hello is repeated every heartbeat tick until the remote's
 * arrives (messages that reach a connection before anyone listens for overlay messages are
 * lost, so one copy is not enough), and answered at once when the remote says it lacks ours.
 * The remote's first hello tells the Sleeve where the peer is and with which cipher, and the
 * overlay switch what the peer offers.
 */
import { encodeOverlayControl, type OverlayControl } from './overlay-control'
import { chooseSleeveCipher, createSleeveCipher, type SleeveCipher } from './sleeve-crypto'
import { deriveSleeveSecret } from './sleeve-kx'
import type { OverlayPeerHello } from './sleeve-overlay-contract'
import type { Live, OverlayCore } from './sleeve-overlay-core'
import { heartbeat } from './sleeve-heartbeats'

/** Sends our hello on the connection of `l`. */
export function sendHello(c: OverlayCore, l: Live): void {
  const { config } = c
  const got = l.link.remote !== undefined
  const ciphers = c.ourCiphers && [...c.ourCiphers]
  const esp = l.espNonce && config.esp?.() ? l.espNonce : undefined
  const trusted = weTrust(c, l)
  l.conn.send({ type: 'overlay', payload: encodeOverlayControl({ t: 'hello', port: config.udpPort, pub: l.keys?.publicKey, got, fastdp: config.fastdp?.(), dp: config.fastdpKind?.(), ciphers, esp, trusted }) })
}

/** With a password: whether we trust the peer's underlay address (`--trusted-subnets`). */
function weTrust(c: OverlayCore, l: Live): boolean {
  return c.config.encrypt && c.config.trusts?.(hostOf(l.conn.remoteAddr)) === true
}

/** The remote's hello arrived on the connection of `l`. */
export function onHello(c: OverlayCore, l: Live, m: Extract<OverlayControl, { t: 'hello' }>): void {
  const { config } = c
  if (config.encrypt && !m.pub) {
    c.stats.badControl++
    c.log.warn(`${l.link.peer} sent no sleeve key although the mesh is encrypted; not using sleeve with it`)
    return
  }
  const r = l.link.onHello(m)
  if (r.first) firstHello(c, l, m)
  if (r.reply) sendHello(c, l)
}

/**
 * The remote's first hello on this connection: agree on the cipher and keys, tell the Sleeve
 * where the peer is, and the overlay switch what it offers; then send a heartbeat at once.
 */
function firstHello(c: OverlayCore, l: Live, m: Extract<OverlayControl, { t: 'hello' }>): void {
  const { config } = c
  const ip = hostOf(l.conn.remoteAddr)
  let cipher: SleeveCipher | undefined
  let esp: OverlayPeerHello['esp']
  l.trusted = weTrust(c, l) && m.trusted === true
  if (config.encrypt && l.keys && m.pub && !l.trusted) {
    const name = chooseSleeveCipher(c.ourCiphers ?? [], m.ciphers)
    const secret = deriveSleeveSecret(l.keys, m.pub, l.conn.outbound)
    cipher = createSleeveCipher(secret, l.conn.outbound, { cipher: name })
    l.cipherName = name
    // encrypted fastdp: both offered ESP (its keys are HKDF'd apart from the sleeve's)
    if (m.esp && l.espNonce && config.esp?.()) esp = { secret, ours: l.espNonce, theirs: m.esp, localIp: hostOf(l.conn.localAddr).replace(/^::ffff:/, '') }
  }
  l.addr = `${ip}:${m.port}`
  c.sleeve?.setPeer(l.shortId, { addr: ip, port: m.port, cipher })
  l.cipherSet = cipher !== undefined
  c.log.info(`sleeve peer ${l.link.peer} (short ID ${l.shortId}) at ${l.addr}${cipher ? `, encrypted with ${cipher.name}` : l.trusted ? ', unencrypted (trusted subnet)' : ''}`)
  c.deps.onPeerHello?.({ peer: l.link.peer, shortId: l.shortId, ip, fastdp: m.fastdp, ...(m.dp ? { dp: m.dp } : {}), ...(esp ? { esp } : {}), ...(l.trusted ? { trusted: true } : {}) })
  c.routes.invalidate()
  heartbeat(c, l)
}

/** "ip:port" or "[v6]:port" → ip. */
function hostOf(addr: string): string {
  const m = /^\[(.*)\]:\d+$/.exec(addr)
  if (m) return m[1]
  const i = addr.lastIndexOf(':')
  return i < 0 ? addr : addr.slice(0, i)
}
