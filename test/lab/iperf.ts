/**
 * iperf3 between two lab hosts: the throughput measurement every benchmark uses.
 */
import { delay, waitFor } from './exec'
import type { LabHost } from './host'

export interface IperfOptions {
  /** Test length; default 5 s. */
  seconds?: number
  /** TCP port; default 5201. */
  port?: number
  /** Parallel streams; default 1. */
  streams?: number
}

export interface IperfResult {
  /** Receiver-side goodput in Gbit/s. */
  gbps: number
  retransmits: number
}

/**
 * Run a one-off iperf3 server in `server` and a client in `client` against `targetIp` (an address
 * of `server` reachable from `client`: underlay or overlay). Throws when the client fails.
 */
export async function iperf(server: LabHost, client: LabHost, targetIp: string, opts: IperfOptions = {}): Promise<IperfResult> {
  const port = opts.port ?? 5201
  const seconds = opts.seconds ?? 5
  const srv = server.spawn(['iperf3', '-s', '-1', '-p', String(port)])
  try {
    await waitFor(`iperf3 server on ${server.name}:${port}`, async () => {
      const r = await server.exec(['ss', '-Hltn', `sport = :${port}`], { allowFail: true })
      return r.stdout.trim().length > 0
    }, 10_000, 50)
    const r = await client.exec(['iperf3', '-c', targetIp, '-p', String(port), '-t', String(seconds),
      '-P', String(opts.streams ?? 1), '-J'], { timeoutMs: (seconds + 30) * 1000, allowFail: true })
    let j: { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } }
    try { j = JSON.parse(r.stdout) } catch { throw new Error(`iperf3 ${client.name} -> ${targetIp}: no JSON (exit ${r.code}): ${r.stderr}`) }
    if (j.error || !j.end?.sum_received) throw new Error(`iperf3 ${client.name} -> ${targetIp}: ${j.error ?? 'no result'}`)
    return { gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent?.retransmits ?? 0 }
  } finally {
    if (srv.exitCode === null && srv.signalCode === null) {
      srv.kill('SIGKILL')
      await delay(50)
    }
  }
}
