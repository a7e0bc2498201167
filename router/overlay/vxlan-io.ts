/**
 * The kernel vxlan path's sockets (native packet and UDP sockets): heartbeat datagrams out with
 * DF set (a path MTU too small for a full-size one refuses it, as it would the traffic), and the
 * heartbeat frames the peers' datagrams become, read off `vxlan-6784` by ethertype only (the
 * device's traffic never reaches userspace).
 */
import { openPacketSocket, openUdpSocket } from '../native'
import { KERNEL_VXLAN_DEV } from '../net'
import { HEARTBEAT_ETHERTYPE } from './fastdp-flows'
import type { VxlanIo } from './vxlan-overlay'

export function openVxlanIo(): VxlanIo {
  const udp = openUdpSocket('0.0.0.0', 0, { pmtuDiscover: true, offload: false, bufferBytes: 1 << 20, batch: 8 })
  let pkt
  try {
    pkt = openPacketSocket(KERNEL_VXLAN_DEV, { ethertype: HEARTBEAT_ETHERTYPE, bufferBytes: 1 << 20, batch: 64, slotBytes: 16_384 })
  } catch (err) {
    udp.close()
    throw err
  }
  const p = pkt
  // nobody reads what arrives on the sending socket: drain it so its buffer never fills
  udp.onReadable(() => { while (udp.recvBatch().length) { /* discard */ } })
  return {
    send(ip, port, datagram) {
      const r = udp.sendBatch([{ addr: ip, port, data: datagram }])
      return r.sent === 1 ? 0 : r.errors[0]?.code ?? 'EAGAIN'
    },
    onFrames(fn) {
      p.onReadable(() => {
        for (;;) {
          const frames = p.readBatch()
          if (!frames.length) break
          fn(frames)
        }
      })
    },
    close() { p.close(); udp.close() },
  }
}
