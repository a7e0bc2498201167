/**
 * Our iptables rules: which chains, which rules, and how to find and remove all of them again.
 *
 * Everything we add lives in chains named `WEAVE*`; the only rules we place in built-in chains
 * are single jumps into those (FORWARD → WEAVE-FORWARD, INPUT → WEAVE-INPUT,
 * POSTROUTING → WEAVE). So `weave reset` finds everything of ours by name in `iptables-save`.
 */
import { Runner, succeeds } from './exec'
import { Ipv4Cidr, networkOf } from './cidr'
import { MULTICAST_ROUTE } from './ip-args'

export type Table = 'filter' | 'nat'

export interface Rule {
  table: Table
  chain: string
  /** Match and target, as iptables takes them after `-A CHAIN`. */
  spec: string[]
}

/** Chains created by ensureBridge, per table. */
export const CHAINS = {
  forward: { table: 'filter', chain: 'WEAVE-FORWARD' },
  expose: { table: 'filter', chain: 'WEAVE-EXPOSE' },
  input: { table: 'filter', chain: 'WEAVE-INPUT' },
  nat: { table: 'nat', chain: 'WEAVE' },
} as const satisfies Record<string, { table: Table; chain: string }>

export const OUR_CHAIN_PREFIX = 'WEAVE'

export function isOurChain(chain: string): boolean {
  return chain === OUR_CHAIN_PREFIX || chain.startsWith(OUR_CHAIN_PREFIX + '-')
}

// ---- argv builders ----

const base = (table: Table): string[] => ['iptables', '-w', '5', '-t', table]

export const iptables = {
  /** Succeeds only when the chain exists. */
  listChain: (table: Table, chain: string): string[] => [...base(table), '-S', chain],
  newChain: (table: Table, chain: string): string[] => [...base(table), '-N', chain],
  flushChain: (table: Table, chain: string): string[] => [...base(table), '-F', chain],
  deleteChain: (table: Table, chain: string): string[] => [...base(table), '-X', chain],
  check: (r: Rule): string[] => [...base(r.table), '-C', r.chain, ...r.spec],
  append: (r: Rule): string[] => [...base(r.table), '-A', r.chain, ...r.spec],
  insertFirst: (r: Rule): string[] => [...base(r.table), '-I', r.chain, '1', ...r.spec],
  delete: (r: Rule): string[] => [...base(r.table), '-D', r.chain, ...r.spec],
  save: (table: Table): string[] => ['iptables-save', '-t', table],
}

// ---- the rules ----

/** Jumps from built-in chains into ours; inserted first so they run before e.g. Docker's. */
export function jumpRules(opts: { controlPort?: number | null }): Rule[] {
  const jumps: Rule[] = [
    { table: 'filter', chain: 'FORWARD', spec: ['-j', CHAINS.forward.chain] },
    { table: 'nat', chain: 'POSTROUTING', spec: ['-j', CHAINS.nat.chain] },
  ]
  if (opts.controlPort != null) jumps.push({ table: 'filter', chain: 'INPUT', spec: ['-j', CHAINS.input.chain] })
  return jumps
}

/**
 * WEAVE-FORWARD, in order:
 *  - nothing hops from docker0 onto weave (containers must not bypass subnet isolation that way);
 *  - bridge-internal traffic is accepted (matters only when br_netfilter is loaded);
 *  - replies to connections containers started are accepted;
 *  - traffic onto weave from elsewhere only for exposed subnets (WEAVE-EXPOSE);
 *  - containers may send anywhere off the bridge.
 * Anything else returns to FORWARD and meets its policy.
 */
export function forwardRules(bridge: string): Rule[] {
  const r = (spec: string[]): Rule => ({ ...CHAINS.forward, spec })
  return [
    r(['-i', 'docker0', '-o', bridge, '-j', 'DROP']),
    r(['-i', bridge, '-o', bridge, '-j', 'ACCEPT']),
    r(['-o', bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']),
    r(['-o', bridge, '-j', CHAINS.expose.chain]),
    r(['-i', bridge, '!', '-o', bridge, '-j', 'ACCEPT']),
  ]
}

/**
 * The control API listens on 127.0.0.1; with route_localnet a neighbour could still reach it
 * with a packet addressed to 127.0.0.1. Drop such packets unless they come from this host.
 */
export function inputRules(controlPort: number): Rule[] {
  return [{
    ...CHAINS.input,
    spec: ['-d', '127.0.0.1/32', '-p', 'tcp', '-m', 'tcp', '--dport', String(controlPort),
      '-m', 'addrtype', '!', '--src-type', 'LOCAL',
      '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'DROP'],
  }]
}

/** What `expose` adds for the subnet of `addr`: accept traffic to it, masquerade across its edge. */
export function exposeRules(addr: Ipv4Cidr, opts: { masquerade: boolean }): Rule[] {
  const net = networkOf(addr)
  const rules: Rule[] = [{ ...CHAINS.expose, spec: ['-d', net, '-j', 'ACCEPT'] }]
  if (opts.masquerade) {
    const nat = (spec: string[]): Rule => ({ ...CHAINS.nat, spec })
    rules.push(
      // Multicast from the subnet keeps its source: receivers on the overlay filter by subnet.
      nat(['-s', net, '-d', MULTICAST_ROUTE, '-j', 'RETURN']),
      nat(['!', '-s', net, '-d', net, '-j', 'MASQUERADE']),
      nat(['-s', net, '!', '-d', net, '-j', 'MASQUERADE']),
    )
  }
  return rules
}

/**
 * Inside a container: multicast on ethwe is dropped unless it comes from one of the container's
 * own subnets. Subnet isolation is otherwise by routing only, which multicast would bypass.
 */
export function containerMulticastDrop(dev: string): Rule {
  return { table: 'filter', chain: 'INPUT', spec: ['-i', dev, '-d', MULTICAST_ROUTE, '-j', 'DROP'] }
}

/** The per-subnet exception to containerMulticastDrop; inserted above it. */
export function containerMulticastAccept(dev: string, addr: Ipv4Cidr): Rule {
  return { table: 'filter', chain: 'INPUT', spec: ['-i', dev, '-s', networkOf(addr), '-d', MULTICAST_ROUTE, '-j', 'ACCEPT'] }
}

// ---- iptables-save parsing ----

/** Split one iptables-save line into arguments (double quotes group, as in comments). */
export function tokenize(line: string): string[] {
  const out: string[] = []
  let cur = ''
  let inQuote = false
  let has = false
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]
    if (inQuote) {
      if (ch === '\\' && i + 1 < line.length) { cur += line[++i]; continue }
      if (ch === '"') { inQuote = false; continue }
      cur += ch
    } else if (ch === '"') { inQuote = true; has = true }
    else if (ch === ' ' || ch === '\t') { if (has) { out.push(cur); cur = ''; has = false } }
    else { cur += ch; has = true }
  }
  if (has) out.push(cur)
  return out
}

export interface SavedTable {
  /** Every chain declared in the table (`:NAME POLICY [counters]`). */
  chains: string[]
  rules: Rule[]
}

/** Parse `iptables-save -t TABLE` output. */
export function parseSave(table: Table, text: string): SavedTable {
  const chains: string[] = []
  const rules: Rule[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line.startsWith(':')) chains.push(line.slice(1).split(/\s+/)[0])
    else if (line.startsWith('-A ')) {
      const t = tokenize(line)
      rules.push({ table, chain: t[1], spec: t.slice(2) })
    }
  }
  return { chains, rules }
}

/** Rules in chains that are not ours but jump into ours: each must be deleted one by one. */
export function foreignJumpsToOurs(saved: SavedTable): Rule[] {
  return saved.rules.filter((r) => !isOurChain(r.chain) && jumpTarget(r) !== undefined && isOurChain(jumpTarget(r)!))
}

function jumpTarget(r: Rule): string | undefined {
  const i = r.spec.findIndex((a) => a === '-j' || a === '-g')
  return i >= 0 ? r.spec[i + 1] : undefined
}

// ---- operations ----

export async function ensureChain(run: Runner, table: Table, chain: string): Promise<boolean> {
  if (await succeeds(run, iptables.listChain(table, chain))) return false
  await run(iptables.newChain(table, chain))
  return true
}

/**
 * Whether every chain and rule named is present, read with one `iptables-save` per table. A rule
 * counts as present only when iptables prints it exactly as we write it; any other difference
 * just makes the caller take the exact, rule-by-rule path (`iptables -C` each).
 */
export async function allInPlace(run: Runner, chains: ReadonlyArray<{ table: Table; chain: string }>, rules: readonly Rule[]): Promise<boolean> {
  const tables = [...new Set([...chains.map((c) => c.table), ...rules.map((r) => r.table)])]
  for (const table of tables) {
    let saved: SavedTable
    try {
      saved = parseSave(table, (await run(iptables.save(table))).stdout)
    } catch {
      return false
    }
    if (!savedHolds(saved, chains.filter((c) => c.table === table).map((c) => c.chain), rules.filter((r) => r.table === table))) return false
  }
  return true
}

/** Pure part of allInPlace: `saved` declares every chain and holds every rule, spelt the same. */
export function savedHolds(saved: SavedTable, chains: readonly string[], rules: readonly Rule[]): boolean {
  const have = new Set(saved.rules.map((r) => `${r.chain} ${r.spec.join(' ')}`))
  return chains.every((c) => saved.chains.includes(c)) && rules.every((r) => have.has(`${r.chain} ${r.spec.join(' ')}`))
}

/** Add `r` unless an identical rule exists; `first` inserts at the top of the chain. */
export async function ensureRule(run: Runner, r: Rule, first = false): Promise<boolean> {
  if (await succeeds(run, iptables.check(r))) return false
  await run(first ? iptables.insertFirst(r) : iptables.append(r))
  return true
}

/** Delete every copy of `r`; returns how many were removed. */
export async function deleteRule(run: Runner, r: Rule): Promise<number> {
  let n = 0
  // Bounded: a rule that `-C` keeps finding after `-D` means something else re-adds it.
  while (n < 100 && await succeeds(run, iptables.check(r))) {
    await run(iptables.delete(r))
    n++
  }
  return n
}

/**
 * Remove all of ours from one table: jumps from other chains first (a referenced chain cannot be
 * deleted), then flush every WEAVE* chain (they may reference each other), then delete them.
 */
export async function removeAllOurs(run: Runner, table: Table): Promise<{ jumps: number; chains: number }> {
  let saved: SavedTable
  try {
    saved = parseSave(table, (await run(iptables.save(table))).stdout)
  } catch (err) {
    // No such table in this namespace (nothing was ever added): nothing of ours either.
    if (/Table does not exist|can't initialize/i.test(String((err as Error).message))) return { jumps: 0, chains: 0 }
    throw err
  }
  const jumps = foreignJumpsToOurs(saved)
  for (const j of jumps) await run(iptables.delete(j))
  const ours = saved.chains.filter(isOurChain)
  for (const c of ours) await run(iptables.flushChain(table, c))
  for (const c of ours) await run(iptables.deleteChain(table, c))
  return { jumps: jumps.length, chains: ours.length }
}
