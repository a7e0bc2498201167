/**
 * One IPv4 parser for all of weave-ts (ipv4/): every place that reads addresses from text — IPAM,
 * host plumbing, WEAVE_CIDR, the native socket layer — accepts and refuses exactly the same
 * strings, and what it accepts round-trips.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { formatIp, parseCidr, parseIp, mustParseIp, Ipv4Error } from '../../ipv4'
import { parseIp as ipamParseIp, parseCidr as ipamParseCidr } from '../../ipam/address'
import { ipToInt, parseCidr as netParseCidr, CidrError } from '../../router/net/cidr'
import { parseIpv4 as nativeParseIpv4 } from '../../router/native'
import { parseWeaveCidr } from '../../proxy/weave-cidr'

const octet = fc.integer({ min: 0, max: 255 })
const quad = fc.tuple(octet, octet, octet, octet)
/** Text that is sometimes a valid address and often nearly one: leading zeros, signs, spaces, extra parts. */
const nearlyIp = fc.oneof(
  quad.map((q) => q.join('.')),
  quad.map((q) => q.map((o, i) => (i === 1 ? `0${o}` : String(o))).join('.')),
  fc.stringMatching(/^[0-9. +x-]{0,18}$/),
  quad.map((q) => ` ${q.join('.')}`),
  fc.tuple(quad, octet).map(([q, o]) => [...q, o].join('.')),
)
const nearlyCidr = fc.oneof(
  fc.tuple(nearlyIp, fc.integer({ min: 0, max: 40 })).map(([ip, p]) => `${ip}/${p}`),
  fc.tuple(nearlyIp, fc.stringMatching(/^[0-9]{0,3}$/)).map(([ip, p]) => `${ip}/${p}`),
  nearlyIp,
)

function netIp(text: string): number | undefined {
  try { const c = netParseCidr(`${text}/32`); return ipToInt(c.ip) } catch (e) { if (e instanceof CidrError) return undefined; throw e }
}

test('every address parser agrees with ipv4/ on any text', () => {
  fc.assert(fc.property(nearlyIp, (text) => {
    const want = parseIp(text)
    assert.is(ipamParseIp(text), want, `ipam on ${JSON.stringify(text)}`)
    assert.is(ipToInt(text), want, `router/net on ${JSON.stringify(text)}`)
    assert.is(nativeParseIpv4(text), want, `native on ${JSON.stringify(text)}`)
    assert.is(netIp(text), want, `router/net cidr on ${JSON.stringify(text)}`)
  }), { numRuns: 3000 })
})

test('every CIDR parser agrees with ipv4/ on any text', () => {
  fc.assert(fc.property(nearlyCidr, (text) => {
    const want = parseCidr(text)
    assert.equal(ipamParseCidr(text), want, `ipam on ${JSON.stringify(text)}`)
    let net: { ip: number; prefix: number } | undefined
    try { const c = netParseCidr(text); net = { ip: ipToInt(c.ip)!, prefix: c.prefix } } catch (e) { if (!(e instanceof CidrError)) throw e }
    assert.equal(net, want, `router/net on ${JSON.stringify(text)}`)
    // WEAVE_CIDR's net: accepts any CIDR up to /30 (host bits cleared)
    const wc = parseWeaveCidr(`net:${text}`)
    assert.is(wc.ok, want !== undefined && want.prefix <= 30, `WEAVE_CIDR net: on ${JSON.stringify(text)}`)
  }), { numRuns: 3000 })
})

test('what is accepted round-trips through formatIp', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), (n) => {
    assert.is(parseIp(formatIp(n)), n)
  }))
  fc.assert(fc.property(quad, (q) => {
    assert.is(formatIp(parseIp(q.join('.'))!), q.join('.'))
  }))
})

test('leading zeros, signs, spaces and out-of-range octets are refused', () => {
  for (const t of ['010.0.0.1', '10.00.0.1', '1.2.3.04', '+1.2.3.4', ' 1.2.3.4', '1.2.3.4 ', '256.0.0.1', '1.2.3', '1.2.3.4.5', '1..2.3', '0x1.2.3.4', '']) {
    assert.is(parseIp(t), undefined, t)
  }
  for (const t of ['1.2.3.4/033', '1.2.3.4/33', '1.2.3.4/', '1.2.3.4/-1', '1.2.3.4']) assert.is(parseCidr(t), undefined, t)
  assert.equal(parseCidr('10.32.0.1/12'), { ip: 0x0a200001, prefix: 12 })
  assert.throws(() => mustParseIp('010.0.0.1'), (e: unknown) => e instanceof Ipv4Error && /010\.0\.0\.1/.test((e as Error).message))
})

test.run()
