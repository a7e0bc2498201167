import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { parseWeaveCidr, formatCidrItem } from '../../proxy/weave-cidr'

test('each accepted form', () => {
  assert.equal(parseWeaveCidr('net:default'), { ok: true, none: false, items: [{ kind: 'net-default' }] })
  assert.equal(parseWeaveCidr('net:10.32.2.0/24'), { ok: true, none: false, items: [{ kind: 'net', cidr: '10.32.2.0/24' }] })
  assert.equal(parseWeaveCidr('ip:10.32.2.50/24'), { ok: true, none: false, items: [{ kind: 'ip', cidr: '10.32.2.50/24' }] })
  assert.equal(parseWeaveCidr('10.32.2.50/24'), { ok: true, none: false, items: [{ kind: 'ip', cidr: '10.32.2.50/24' }] })
  assert.equal(parseWeaveCidr('none'), { ok: true, none: true, items: [] })
  assert.equal(parseWeaveCidr('  none \t'), { ok: true, none: true, items: [] })
})

test('several entries, any whitespace, order kept', () => {
  const r = parseWeaveCidr(' net:default\tnet:10.32.4.0/22\n ip:10.40.0.9/16  10.32.2.5/24 ')
  assert.ok(r.ok)
  if (!r.ok) return
  assert.equal(r.items.map(formatCidrItem), ['net:default', 'net:10.32.4.0/22', 'ip:10.40.0.9/16', 'ip:10.32.2.5/24'])
})

test('empty or blank value means the default subnet (WEAVE_CIDR="" forces allocation)', () => {
  for (const v of ['', '   ', '\t\n']) assert.equal(parseWeaveCidr(v), { ok: true, none: false, items: [{ kind: 'net-default' }] }, JSON.stringify(v))
})

test('net: clears host bits', () => {
  assert.equal(parseWeaveCidr('net:10.32.2.77/24'), { ok: true, none: false, items: [{ kind: 'net', cidr: '10.32.2.0/24' }] })
  assert.equal(parseWeaveCidr('net:10.47.255.255/12'), { ok: true, none: false, items: [{ kind: 'net', cidr: '10.32.0.0/12' }] })
})

test('bad tokens are refused, quoting the token', () => {
  const cases: Array<[string, string]> = [
    ['net:bogus', 'net:bogus'],
    ['ip:10.32.2.50', 'ip:10.32.2.50'], // a claim needs a prefix
    ['10.32.2.50', '10.32.2.50'],
    ['net:default foo', 'foo'],
    ['ip:256.1.1.1/24', 'ip:256.1.1.1/24'],
    ['ip:10.32.2.50/33', 'ip:10.32.2.50/33'],
    ['ip:010.32.2.50/24', 'ip:010.32.2.50/24'],
    ['ip:10.32.2.255/24', 'ip:10.32.2.255/24'], // broadcast address
    ['net:10.32.2.0/31', 'net:10.32.2.0/31'],
    ['none net:default', 'none'],
    ['NONE', 'NONE'],
    ['net:', 'net:'],
    ['ip:', 'ip:'],
    ['net:10.32.2.0/24,net:10.32.3.0/24', 'net:10.32.2.0/24,net:10.32.3.0/24'],
  ]
  for (const [value, token] of cases) {
    const r = parseWeaveCidr(value)
    assert.is(r.ok, false, value)
    if (r.ok) continue
    assert.is(r.token, token, value)
    assert.ok(r.error.includes(JSON.stringify(token)), `${value}: ${r.error}`)
  }
})

test('a network address is claimed as given, as Weave does (not an allocation in the subnet)', () => {
  assert.equal(parseWeaveCidr('ip:10.32.2.0/24'), { ok: true, none: false, items: [{ kind: 'ip', cidr: '10.32.2.0/24' }] })
  assert.equal(parseWeaveCidr('10.2.3.0/24'), { ok: true, none: false, items: [{ kind: 'ip', cidr: '10.2.3.0/24' }] })
})

test('/31 and /32 claims are host addresses', () => {
  assert.ok(parseWeaveCidr('ip:10.32.2.0/31').ok)
  assert.ok(parseWeaveCidr('ip:10.32.2.7/32').ok)
})

test('fuzz: never throws; an error always quotes a token of the input', () => {
  fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => {
    const r = parseWeaveCidr(s)
    if (!r.ok) assert.ok(s.includes(r.token) && r.error.includes(JSON.stringify(r.token)))
  }), { numRuns: 3000 })
  const tokenish = fc.oneof(
    fc.constantFrom('net:default', 'none', 'net:', 'ip:', '/', '.'),
    fc.tuple(fc.constantFrom('', 'net:', 'ip:'), fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 5 }), fc.integer({ min: -1, max: 40 }))
      .map(([p, octets, len]) => `${p}${octets.join('.')}${len >= 0 ? `/${len}` : ''}`),
  )
  fc.assert(fc.property(fc.array(tokenish, { maxLength: 4 }), fc.constantFrom(' ', '\t', '  '), (tokens, sep) => {
    const r = parseWeaveCidr(tokens.join(sep))
    if (r.ok && !r.none) {
      // Accepted values round-trip through their canonical form.
      const again = parseWeaveCidr(r.items.map(formatCidrItem).join(' '))
      assert.equal(again, r)
    }
  }), { numRuns: 3000 })
})

test.run()
