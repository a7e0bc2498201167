/**
 * Weave parity of the proxy's TLS flags on one lab host with its own dockerd, with certificates
 * made in the test by openssl and the real docker client:
 * - `--tlsverify --tlscacert --tlscert --tlskey` with `-H tcp://127.0.0.1:12375`: `docker
 *   --tlsverify` with a client certificate from that CA runs a container through the proxy and it
 *   gets ethwe; a client without a certificate, one with a certificate from another CA, and plain
 *   HTTP are refused;
 * - `--tls` alone: TLS, no client certificate needed;
 * - a missing key file: `weave launch` fails naming `--tlskey` and the file.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createLab, labUnavailableReason, type Lab, type LabHost } from '../lab'
import { skipFile } from '../skip'

const RANGE = ['--ipalloc-range', '10.2.0.0/16', '--ipalloc-init', 'consensus=1']
const ADDR = 'tcp://127.0.0.1:12375'
const skip = labUnavailableReason({ docker: true, ovs: false })
let lab: Lab | undefined
let h: LabHost
let pki: string
let empty: string

/** A CA, a server certificate for 127.0.0.1, a client certificate, and a client from another CA. */
async function makePki(dir: string): Promise<void> {
  const sh = (s: string) => h.sh(`cd ${dir} && ${s}`, { timeoutMs: 60_000 })
  const ca = (name: string) => sh(`openssl req -x509 -newkey rsa:2048 -nodes -keyout ${name}-key.pem -out ${name}.pem -days 1 -subj /CN=${name} 2>/dev/null`)
  const leaf = (name: string, caName: string, ext: string) => sh(
    `openssl req -newkey rsa:2048 -nodes -keyout ${name}-key.pem -out ${name}.csr -subj /CN=${name} 2>/dev/null && ` +
    `printf '${ext}\\n' > ${name}.ext && ` +
    `openssl x509 -req -in ${name}.csr -CA ${caName}.pem -CAkey ${caName}-key.pem -CAcreateserial -out ${name}-cert.pem -days 1 -extfile ${name}.ext 2>/dev/null`)
  await ca('ca')
  await ca('other-ca')
  await leaf('server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth')
  await leaf('client', 'ca', 'extendedKeyUsage=clientAuth')
  await leaf('rogue', 'other-ca', 'extendedKeyUsage=clientAuth')
}

/** The docker client in the lab host against the proxy's TCP address; DOCKER_CERT_PATH empty. */
function docker(flags: string, args: string) {
  return h.sh(`docker ${flags} -H ${ADDR} ${args}`, { env: { DOCKER_CERT_PATH: empty, HOME: empty }, allowFail: true, timeoutMs: 120_000 })
}
const serverFiles = () => ['--tlscacert', path.join(pki, 'ca.pem'), '--tlscert', path.join(pki, 'server-cert.pem'), '--tlskey', path.join(pki, 'server-key.pem')]
const client = (name: string) => `--tlscacert ${pki}/ca.pem --tlscert ${pki}/${name}-cert.pem --tlskey ${pki}/${name}-key.pem`

if (skip) {
  skipFile('parity proxy TLS e2e', skip)
} else {
  test.before(async () => {
    lab = await createLab({ hosts: 1, docker: true })
    h = lab.hosts[0]
    pki = path.join(h.dir, 'pki')
    empty = path.join(h.dir, 'no-certs')
    fs.mkdirSync(pki, { recursive: true })
    fs.mkdirSync(empty, { recursive: true })
    await makePki(pki)
  })
  test.after(async () => {
    await h?.weave(['stop'], { allowFail: true })
    await lab?.teardown()
  })

  test('--tlsverify: a client certificate from the CA gets through (and ethwe); others are refused', async () => {
    const a = await h.launchWeave([...RANGE, '-H', ADDR, '--tlsverify', ...serverFiles()])
    assert.is(a.code, 0, a.stderr)
    const run = await docker(`--tlsverify ${client('client')}`, 'run --rm busybox ip -4 addr show ethwe')
    assert.is(run.code, 0, run.stderr)
    assert.match(run.stdout, /inet 10\.2\.\d+\.\d+\/16/, 'the container started through the TLS proxy has its weave address')
    const ps = await docker(`--tlsverify ${client('client')}`, 'ps')
    assert.is(ps.code, 0, ps.stderr)

    const noCert = await docker(`--tlsverify --tlscacert ${pki}/ca.pem`, 'version --format {{.Server.Version}}')
    assert.is.not(noCert.code, 0, 'no client certificate: refused')
    assert.match(noCert.stderr, /certificate|tls|handshake/i)
    const rogue = await docker(`--tlsverify ${client('rogue')}`, 'ps')
    assert.is.not(rogue.code, 0, 'a certificate from another CA: refused')
    const plain = await docker('', 'ps')
    assert.is.not(plain.code, 0, 'plain HTTP on the TLS port: refused')
    assert.match(h.weaverLog(40), /proxy TLS: /, 'the refusals are logged')
    // the unix socket stays plain, as Weave's
    const unix = await h.sh(`docker -H unix://${path.join(h.weaveRunDir, 'weave.sock')} ps`, { allowFail: true })
    assert.is(unix.code, 0, unix.stderr)
  })

  test('--tls alone: TLS without client certificates', async () => {
    assert.is((await h.weave(['stop'])).code, 0)
    const a = await h.launchWeave([...RANGE, '-H', ADDR, '--tls', ...serverFiles()])
    assert.is(a.code, 0, a.stderr)
    const v = await docker(`--tlsverify --tlscacert ${pki}/ca.pem`, 'version --format {{.Server.Version}}')
    assert.is(v.code, 0, v.stderr)
    assert.match(v.stdout.trim(), /^\d+\.\d+/)
    const plain = await docker('', 'ps')
    assert.is.not(plain.code, 0, 'still TLS: plain HTTP is refused')
  })

  test('a missing key file: weave launch says which flag and file', async () => {
    assert.is((await h.weave(['stop'])).code, 0)
    const missing = path.join(pki, 'nope-key.pem')
    const r = await h.weave(['launch', ...RANGE, '-H', ADDR, '--tlsverify', '--tlscacert', path.join(pki, 'ca.pem'),
      '--tlscert', path.join(pki, 'server-cert.pem'), '--tlskey', missing], { allowFail: true })
    assert.is.not(r.code, 0)
    assert.ok((r.stdout + r.stderr + h.weaverLog(20)).includes(`--tlskey ${missing}: ENOENT`), r.stderr + h.weaverLog(20))
  })

  test.run()
}
