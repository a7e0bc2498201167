/**
 * Weave parity of `weave launch` on one lab host with its own dockerd, through the real `weave`
 * command and the docker client through the proxy:
 * - start-up lease GC: a container removed while the router was down loses its lease when the
 *   router starts again; a running one keeps it;
 * - a relaunch with another `--ipalloc-range` than the saved ring is refused by `weave launch`
 *   itself, saying what to do (`--ipalloc-range OLD` or `weave reset`), and starts nothing.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as path from 'node:path'
import { createLab, labUnavailableReason, REPO_ROOT, type Lab, type LabHost } from '../lab'
import { skipFile } from '../skip'

const WEAVE = path.join(REPO_ROOT, 'weave')
const RANGE = ['--ipalloc-range', '10.2.0.0/16', '--ipalloc-init', 'consensus=1']
const skip = labUnavailableReason({ docker: true, ovs: false })
let lab: Lab | undefined
let h: LabHost

function user(script: string, opts: { allowFail?: boolean } = {}) {
  return h.sh(`eval "$(${WEAVE} env)" && ${script}`, { env: h.weaveEnv(), allowFail: opts.allowFail, timeoutMs: 120_000 })
}
const lease = async (id: string) => (await h.api(`/ip/${id}`)).text.trim()

if (skip) {
  skipFile('parity launch e2e', skip)
} else {
  test.before(async () => {
    lab = await createLab({ hosts: 1, docker: true })
    h = lab.hosts[0]
    const a = await h.launchWeave(RANGE)
    assert.is(a.code, 0, a.stderr)
  })
  test.after(async () => {
    await h?.weave(['stop'], { allowFail: true })
    await lab?.teardown()
  })

  test('start-up lease GC: removed while the router was down → freed; running → kept', async () => {
    const gone = (await user('docker run -d --name gone busybox sleep 600')).stdout.trim()
    const kept = (await user('docker run -d --name kept busybox sleep 600')).stdout.trim()
    assert.match(await lease(gone), /^10\.2\./)
    const keptAddr = await lease(kept)
    assert.match(keptAddr, /^10\.2\./)
    assert.is((await h.weave(['stop'])).code, 0)
    await h.docker(['rm', '-f', 'gone']) // straight to the engine: the router is down
    const a = await h.launchWeave(RANGE)
    assert.is(a.code, 0, a.stderr)
    // The check runs in the background of the start: give it a moment.
    for (let i = 0; i < 50 && (await lease(gone)) !== ''; i++) await new Promise((r) => setTimeout(r, 100))
    assert.is(await lease(gone), '', `the removed container's lease is freed\n${h.weaverLog(10)}`)
    assert.is(await lease(kept), keptAddr, 'the running container keeps its lease')
    assert.match(h.weaverLog(30), /released the leases of 1 container\(s\) removed while the router was down/)
    await user('docker rm -f kept')
  })

  test('relaunch with another --ipalloc-range: weave launch says what to do and starts nothing', async () => {
    assert.is((await h.weave(['stop'])).code, 0)
    const r = await h.weave(['launch', '--ipalloc-range', '10.3.0.0/16', '--ipalloc-init', 'consensus=1'], { allowFail: true })
    const out = r.stdout + r.stderr
    assert.is.not(r.code, 0, out)
    assert.match(out, /is for range 10\.2\.0\.0\/16, but --ipalloc-range is 10\.3\.0\.0\/16/)
    assert.match(out, /--ipalloc-range 10\.2\.0\.0\/16/)
    assert.match(out, /weave reset/)
    assert.not.match(out, /exited \(code/, 'refused before any daemon started')
    const st = await h.weave(['status'], { allowFail: true })
    assert.is.not(st.code, 0, 'no router is running')
    // The advice works: with the old range it starts.
    const ok = await h.launchWeave(RANGE)
    assert.is(ok.code, 0, ok.stderr)
  })
}

test.run()
