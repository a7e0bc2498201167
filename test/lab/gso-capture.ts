/**
 * Whether TCP segmentation offload reaches a device: what `ethtool -k` says of it, and the sizes
 * of the TCP packets a capture on it sees while traffic runs. A packet longer than the MTU on a
 * device means the kernel passed a TSO/GSO segment through it whole (it is cut later, after
 * encapsulation); without the offloads every packet there would be MTU-sized.
 */
import { spawn } from 'node:child_process'
import { delay, waitFor } from './exec'
import type { LabHost } from './host'

/** The offload features of `dev` in h that matter for a tunnel (`on`, `off`, `off [fixed]`...). */
export async function offloads(h: LabHost, dev: string): Promise<Record<string, string>> {
  const k = (await h.exec(['ethtool', '-k', dev])).stdout
  const out: Record<string, string> = {}
  for (const name of ['tcp-segmentation-offload', 'generic-segmentation-offload', 'tx-checksumming', 'scatter-gather']) {
    out[name] = new RegExp(`^${name}: (.+)$`, 'm').exec(k)?.[1].trim() ?? 'missing'
  }
  return out
}

export interface TcpSizes<T> {
  /** TCP payload lengths of the packets seen (first `max`), both directions. */
  lengths: number[]
  /** What `during` returned. */
  result: T
  /** tcpdump's text, for failure messages. */
  text: string
}

/** TCP payload lengths tcpdump sees on `dev` in h (filter e.g. `tcp port 5555`) while `during` runs. */
export async function tcpSizesOn<T>(h: LabHost, dev: string, filter: string, during: () => Promise<T>, max = 400): Promise<TcpSizes<T>> {
  const p = spawn('ip', ['netns', 'exec', h.ns, 'tcpdump', '-i', dev, '-nn', '-l', '-c', String(max), filter], { stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  let err = ''
  p.stdout.on('data', (d) => { text += d })
  p.stderr.on('data', (d) => { err += d })
  try {
    await waitFor('tcpdump listening', () => /listening on/.test(err), 30_000, 50)
    const result = await during()
    await delay(500)
    return { lengths: [...text.matchAll(/: Flags \[[^\]]*\].* length (\d+)/g)].map((m) => Number(m[1])), result, text }
  } finally {
    if (p.exitCode === null && p.signalCode === null) { // -c may have ended it already
      const gone = new Promise((r) => p.on('exit', r))
      p.kill('SIGINT')
      await gone
    }
  }
}
