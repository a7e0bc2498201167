/**
 * `npm run bench -- baseline [--seconds N]`: iperf3 throughput between two lab hosts over (a) the
 * plain underlay and (b) a kernel vxlan device with static fdb entries, in one run. Every later
 * data-plane benchmark reports a ratio to (b), measured in its own run with the same helper
 * (`measureKernelVxlan` from test/lab). Last line: one JSON object.
 */
import { labUnavailableReason, measureKernelVxlan, measureUnderlay, withLab } from '../lab'

async function main(): Promise<void> {
  const i = process.argv.indexOf('--seconds')
  const seconds = i > 0 ? Number(process.argv[i + 1]) : 5
  const why = labUnavailableReason()
  if (why) {
    console.error(`baseline: cannot run: ${why}`)
    console.log(JSON.stringify({ bench: 'baseline', skipped: why }))
    process.exitCode = 1
    return
  }
  await withLab({ hosts: 2 }, async (lab) => {
    const [a, b] = lab.hosts
    const underlay = await measureUnderlay(a, b, { seconds })
    console.error(`underlay ${a.name} -> ${b.name}: ${underlay.toFixed(2)} Gbit/s`)
    const vxlan = await measureKernelVxlan(a, b, { seconds })
    console.error(`kernel vxlan ${a.name} -> ${b.name}: ${vxlan.toFixed(2)} Gbit/s (${(vxlan / underlay).toFixed(2)}x underlay)`)
    console.log(JSON.stringify({
      bench: 'baseline',
      underlay_gbps: Number(underlay.toFixed(3)),
      kernel_vxlan_gbps: Number(vxlan.toFixed(3)),
      kernel_vxlan_vs_underlay: Number((vxlan / underlay).toFixed(3)),
      seconds,
    }))
  })
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
