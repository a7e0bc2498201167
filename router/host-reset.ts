/**
 * `weave reset`'s host part: remove what the router made on this host (the OVS bridge `datapath`
 * when an OVSDB server answers, the weave bridge, vethwe* links, weave's iptables chains) and say
 * what went. Loaded only by `weave reset` (through router/index.ts), so other commands never load
 * the host plumbing.
 */
import * as fs from 'node:fs'
import { createNetHost } from './net'
import { connectOvsdb, removeDatapath } from './ovsdb'

export interface HostResetReport {
  /** One line per thing removed or failed, for the user. */
  messages: string[]
}

export async function resetHost(opts: { ovsdbTarget: string | undefined }): Promise<HostResetReport> {
  const messages: string[] = []
  if (opts.ovsdbTarget) messages.push(...await removeOvsBridge(opts.ovsdbTarget))
  const r = await createNetHost().resetHost()
  if (r.links.length || r.iptablesJumps || r.iptablesChains) {
    messages.push(`removed ${r.links.length} link(s), ${r.iptablesChains} iptables chain(s), ${r.iptablesJumps} jump(s)`)
  }
  return { messages }
}

/** Remove the `datapath` OVS bridge fastdp made, when an OVSDB server is there to ask. */
async function removeOvsBridge(target: string): Promise<string[]> {
  if (target.startsWith('unix:') && !fs.existsSync(target.slice('unix:'.length))) return []
  let client
  try {
    client = await connectOvsdb(target, { callTimeoutMs: 5_000 })
  } catch {
    return [] // no OVS here: nothing of ours in it
  }
  try {
    return (await removeDatapath(client, 'datapath')) ? ['removed the OVS bridge datapath'] : []
  } catch (err) {
    return [`weave: could not remove the OVS bridge datapath: ${(err as Error).message}`]
  } finally {
    client.close()
  }
}
