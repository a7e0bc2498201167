/**
 * The persistent peer name: 48 bits written like a MAC address (`ce:31:7a:0b:44:02`), created
 * once from random bytes and kept in the state dir, so a host keeps its identity across
 * restarts while its per-start UID changes. The first octet has the locally administered bit
 * set and the multicast bit clear, so the name is also a valid unicast MAC.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { Rng } from './deps'

const NAME_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/

export function generatePeerName(rng: Rng): string {
  const b = rng.bytes(6)
  b[0] = (b[0] & 0xfe) | 0x02
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':')
}

export function isPeerName(s: string): boolean {
  return NAME_RE.test(s)
}

/**
 * A peer name as Weave's `--name` takes it: six groups of 1-2 hex digits, or fewer with one `::`
 * standing for the missing zero groups (`::1` is 00:00:00:00:00:01). Undefined when it is not one.
 */
export function parseUserPeerName(text: string): string | undefined {
  const t = text.trim().toLowerCase()
  const halves = t.split('::')
  if (halves.length > 2) return undefined
  const groups = (s: string) => (s === '' ? [] : s.split(':'))
  const head = groups(halves[0])
  const tail = halves.length === 2 ? groups(halves[1]) : []
  const missing = 6 - head.length - tail.length
  if (halves.length === 2 ? missing < 1 || missing > 5 : missing !== 0) return undefined
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail]
  if (!all.every((g) => /^[0-9a-f]{1,2}$/.test(g))) return undefined
  return all.map((g) => g.padStart(2, '0')).join(':')
}

/**
 * Read `${stateDir}/peer-name`, or create it. A file that exists but does not hold a name is an
 * error, not something to overwrite: it may be a typo'd state dir of another tool.
 */
export function loadOrCreatePeerName(stateDir: string, rng: Rng): string {
  const file = path.join(stateDir, 'peer-name')
  if (fs.existsSync(file)) {
    const name = fs.readFileSync(file, 'utf8').trim().toLowerCase()
    if (!isPeerName(name)) throw new Error(`${file} does not hold a peer name ("${name.slice(0, 40)}"); remove it to make a new one`)
    return name
  }
  const name = generatePeerName(rng)
  fs.mkdirSync(stateDir, { recursive: true })
  const tmp = `${file}.tmp`
  fs.writeFileSync(tmp, name + '\n', { mode: 0o644 })
  const fd = fs.openSync(tmp, 'r')
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  fs.renameSync(tmp, file)
  return name
}
