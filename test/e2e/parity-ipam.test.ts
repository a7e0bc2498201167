/**
 * Weave parity, IPAM side, on two lab hosts with their own dockerd, through the proxy and the real
 * `weave` command: launched with `--ipalloc-range 10.2.0.0/16 --ipalloc-default-subnet 10.2.2.0/24`.
 *
 * - The duplicate-address bug of issue 13: a container restarted and re-attached (`weave attach`)
 *   keeps its lease past IPAM's 30 s die grace, and a new container in the same subnet gets
 *   another address; one stopped for good loses its lease after the grace.
 * - Re-attaching a restarted container with its old explicit address (`weave attach IP/LEN`) works
 *   and it keeps that address past the grace; another container cannot claim it.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as path from 'node:path'
import { createLab, labUnavailableReason, REPO_ROOT, type Lab, type LabHost } from '../lab'
import { skipFile } from '../skip'

const WEAVE = path.join(REPO_ROOT, 'weave')
const RANGE = ['--ipalloc-range', '10.2.0.0/16', '--ipalloc-default-subnet', '10.2.2.0/24', '--ipalloc-init', 'consensus=2']
const skip = labUnavailableReason({ docker: true, ovs: false })
let lab: Lab | undefined
let h1: LabHost
let h2: LabHost

/** A shell line in a host after `eval $(weave env)`, as a user would type it. */
function user(on: LabHost, script: string, opts: { allowFail?: boolean } = {}) {
  return on.sh(`eval "$(${WEAVE} env)" && ${script}`, { env: on.weaveEnv(), allowFail: opts.allowFail, timeoutMs: 120_000 })
}

const inet = (out: string) => /inet (\d+\.\d+\.\d+\.\d+\/\d+)/.exec(out)?.[1]
const ethwe = async (on: LabHost, c: string) => inet((await user(on, `docker exec ${c} ip -4 addr show ethwe`)).stdout)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

if (skip) {
  skipFile('parity ipam e2e', skip)
} else {
  test.before(async () => {
    lab = await createLab({ hosts: 2, docker: true })
    ;[h1, h2] = lab.hosts
    const a = await h1.launchWeave(RANGE)
    assert.is(a.code, 0, a.stderr)
    const b = await h2.launchWeave([...RANGE, h1.underlayIp])
    assert.is(b.code, 0, b.stderr)
  })
  test.after(async () => {
    for (const x of lab?.hosts ?? []) await x.weave(['stop'], { allowFail: true })
    await lab?.teardown()
  })

  test('restart + weave attach: containers keep their addresses past the die grace; new ones get others', async () => {
    // c6: the container, through the proxy; c9: a plain container given its address by
    // weave attach (as a Weave user without the proxy does), restarted and attached again.
    const c6 = (await user(h1, 'docker run -d --name c6 -e WEAVE_CIDR=net:10.2.3.0/24 busybox sleep 600')).stdout.trim()
    const c9 = (await h1.docker(['run', '-d', '--name', 'c9', 'busybox', 'sleep', '600'])).stdout.trim()
    // c10: stopped for good, so its lease goes after the grace (as Weave's).
    const c10 = (await user(h1, 'docker run -d --name c10 -e WEAVE_CIDR=net:10.2.3.0/24 busybox sleep 600')).stdout.trim()
    const a9 = (await h1.weave(['attach', 'net:10.2.3.0/24', 'c9'])).stdout.trim()
    const first6 = await ethwe(h1, 'c6')
    assert.match(first6 ?? '', /^10\.2\.3\.\d+\/24$/)
    await user(h1, 'docker restart -t 1 c6')
    assert.is(await ethwe(h1, 'c6'), first6, 'the restart keeps the address')
    await h1.docker(['restart', '-t', '1', 'c9'])
    assert.is((await h1.weave(['attach', 'net:10.2.3.0/24', 'c6'])).stdout.trim(), first6!.split('/')[0], 'weave attach answers the address it holds')
    assert.is((await h1.weave(['attach', 'net:10.2.3.0/24', 'c9'])).stdout.trim(), a9, 'c9 attached again keeps its address')
    // c11: an explicit address, re-attached after a restart.
    const c11 = (await h1.docker(['run', '-d', '--name', 'c11', 'busybox', 'sleep', '600'])).stdout.trim()
    assert.is((await h1.weave(['attach', '10.2.3.200/24', 'c11'])).stdout.trim(), '10.2.3.200')
    await h1.docker(['restart', '-t', '1', 'c11'])
    const re = await h1.weave(['attach', '10.2.3.200/24', 'c11'], { allowFail: true })
    assert.is(re.code, 0, re.stderr)
    assert.is(re.stdout.trim(), '10.2.3.200')
    assert.match((await h1.docker(['exec', 'c11', 'ip', '-4', 'addr', 'show', 'ethwe'])).stdout, /inet 10\.2\.3\.200\/24/)
    await h1.docker(['stop', '-t', '0', 'c10'])
    assert.ok((await h1.api(`/ip/${c10}`)).text.trim(), 'c10 keeps its lease during the grace')
    await sleep(31_000)
    assert.is((await h1.api(`/ip/${c10}`)).text.trim(), '', 'c10, stopped for good, lost its lease after the grace')
    assert.is((await h1.api(`/ip/${c6}`)).text.trim(), first6, `c6 still holds its lease after the grace\n${h1.weaverLog(20)}`)
    assert.is((await h1.api(`/ip/${c9}`)).text.trim(), `${a9}/24`, `c9 still holds its lease after the grace\n${h1.weaverLog(20)}`)
    assert.is((await h1.api(`/ip/${c11}`)).text.trim(), '10.2.3.200/24', 'c11 keeps its explicit address after the grace')
    await h1.docker(['run', '-d', '--name', 'c12', 'busybox', 'sleep', '600'])
    const taken = await h1.weave(['attach', '10.2.3.200/24', 'c12'], { allowFail: true })
    assert.is.not(taken.code, 0, 'another container cannot claim c11\'s address')
    assert.match(taken.stderr, /already owned by/)
    const seen = new Set([first6, `${a9}/24`])
    for (const [on, name] of [[h1, 'd1'], [h2, 'd2'], [h1, 'd3']] as const) {
      await user(on, `docker run -d --name ${name} -e WEAVE_CIDR=net:10.2.3.0/24 busybox sleep 600`)
      const a = await ethwe(on, name)
      assert.ok(a && !seen.has(a), `${name} got ${a}, already held by a live container: ${[...seen].join(' ')}`)
      seen.add(a)
    }
    await user(h1, 'docker rm -f c6 c9 c10 c11 c12 d1 d3')
    await user(h2, 'docker rm -f d2')
  })
}

test.run()
