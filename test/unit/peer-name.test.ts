import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { generatePeerName, isPeerName, loadOrCreatePeerName, parseUserPeerName } from '../../router/peer-name'
import { listenAddresses } from '../../router/proxy-wiring'
import { claimPidFile, runningPid } from '../../router/pid-file'
import { seededRng } from '../../router/deps'

test('generated names are unicast, locally administered MAC-style names', () => {
  const rng = seededRng(7)
  for (let i = 0; i < 200; i++) {
    const n = generatePeerName(rng)
    assert.ok(isPeerName(n), n)
    const first = parseInt(n.slice(0, 2), 16)
    assert.is(first & 1, 0, 'multicast bit clear')
    assert.is(first & 2, 2, 'local bit set')
  }
})

test('the name persists in the state dir and survives a reload', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpn-'))
  try {
    const a = loadOrCreatePeerName(dir, seededRng(1))
    const b = loadOrCreatePeerName(dir, seededRng(2))
    assert.is(a, b)
    assert.is(fs.readFileSync(path.join(dir, 'peer-name'), 'utf8'), a + '\n')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('a corrupt peer-name file is an error, not silently replaced', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpn-'))
  try {
    fs.writeFileSync(path.join(dir, 'peer-name'), 'garbage')
    assert.throws(() => loadOrCreatePeerName(dir, seededRng(1)), /does not hold a peer name/)
    assert.is(fs.readFileSync(path.join(dir, 'peer-name'), 'utf8'), 'garbage')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('pid file: claimed once, refused while the owner lives, taken over when stale', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpid-'))
  const file = path.join(dir, 'weaver.pid')
  try {
    assert.equal(claimPidFile(file, process.pid), { ok: true })
    assert.is(runningPid(file), process.pid)
    // Another would-be daemon (any other pid) is refused while we live.
    assert.equal(claimPidFile(file, process.pid + 1), { ok: false, runningPid: process.pid })
    // A pid that cannot exist is stale.
    fs.writeFileSync(file, '4194303999\n')
    assert.is(runningPid(file), undefined)
    assert.equal(claimPidFile(file, process.pid), { ok: true })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('--name takes Weave\'s MAC forms, :: standing for zero groups', () => {
  assert.is(parseUserPeerName('::1'), '00:00:00:00:00:01')
  assert.is(parseUserPeerName('::1a'), '00:00:00:00:00:1a')
  assert.is(parseUserPeerName('a::b'), '0a:00:00:00:00:0b')
  assert.is(parseUserPeerName('1:2::'), '01:02:00:00:00:00')
  assert.is(parseUserPeerName('AA:BB:CC:DD:EE:FF'), 'aa:bb:cc:dd:ee:ff')
  for (const bad of ['', '::', 'host1', '1:2:3', '1::2::3', '1:2:3:4:5:6:7', '::123', '1:2:3:4:5::6']) assert.is(parseUserPeerName(bad), undefined, bad)
})

test('-H: one tcp (default port 12375, loopback), any number of unix sockets, the run dir\'s one not twice', () => {
  const runDir = '/run/weave'
  assert.equal(listenAddresses({ runDir, proxyListen: ['tcp://:12375', 'unix:///tmp/a.sock', 'unix:///run/weave/weave.sock', 'unix:///tmp/a.sock'] }),
    { tcp: { host: '127.0.0.1', port: 12375 }, extraUnix: ['/tmp/a.sock'] })
  assert.equal(listenAddresses({ runDir, proxyListen: ['tcp://0.0.0.0'] }), { tcp: { host: '0.0.0.0', port: 12375 }, extraUnix: [] })
  assert.throws(() => listenAddresses({ runDir, proxyListen: ['tcp://:1', 'tcp://:2'] }), /one tcp/)
  assert.throws(() => listenAddresses({ runDir, proxyListen: ['unix://relative'] }), /absolute/)
})

test.run()
