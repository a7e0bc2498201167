/**
 * OVSDB values on the wire (RFC 7047 §5.1): atoms, sets and maps, and helpers to build and read
 * them. A set of one atom may be sent as the bare atom; an empty or optional value is an empty
 * set; `["uuid", …]` names a row, `["named-uuid", …]` a row inserted earlier in the same transaction.
 */

export type UuidAtom = ['uuid', string]
export type NamedUuidAtom = ['named-uuid', string]
export type Atom = string | number | boolean | UuidAtom | NamedUuidAtom
export type OvsdbSet = ['set', Atom[]]
export type OvsdbMap = ['map', [Atom, Atom][]]
export type Value = Atom | OvsdbSet | OvsdbMap
/** A row as sent or received: column name → value. Selects add `_uuid` and `_version`. */
export type Row = Record<string, Value>

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
// §5.1: <id> is [_a-zA-Z][_a-zA-Z0-9]*
const ID_RE = /^[_a-zA-Z][_a-zA-Z0-9]*$/

export function uuid(u: string): UuidAtom {
  if (!UUID_RE.test(u)) throw new TypeError(`not a UUID: ${u}`)
  return ['uuid', u]
}

export function namedUuid(name: string): NamedUuidAtom {
  if (!ID_RE.test(name)) throw new TypeError(`not a valid uuid-name: ${name}`)
  return ['named-uuid', name]
}

export function set(atoms: Iterable<Atom>): OvsdbSet {
  return ['set', [...atoms]]
}

/** `["map", …]` from an object (string keys) or from pairs. */
export function map(entries: Record<string, Atom> | Iterable<[Atom, Atom]>): OvsdbMap {
  const pairs = Symbol.iterator in Object(entries) ? [...(entries as Iterable<[Atom, Atom]>)] : Object.entries(entries)
  return ['map', pairs]
}

export function isUuidAtom(v: unknown): v is UuidAtom {
  return Array.isArray(v) && v.length === 2 && v[0] === 'uuid' && typeof v[1] === 'string'
}

function isTagged(v: unknown, tag: string): v is [string, unknown[]] {
  return Array.isArray(v) && v.length === 2 && v[0] === tag && Array.isArray(v[1])
}

/** The members of a set value (a bare atom is a set of one; a map is not a set). */
export function setValues(v: Value | undefined): Atom[] {
  if (v === undefined) return []
  if (isTagged(v, 'set')) return v[1] as Atom[]
  if (isTagged(v, 'map')) throw new TypeError('a map is not a set')
  return [v]
}

/** The single member of an optional value (a set of 0 or 1), or undefined. */
export function optional(v: Value | undefined): Atom | undefined {
  const s = setValues(v)
  return s[0]
}

/** The entries of a map value. */
export function mapEntries(v: Value | undefined): [Atom, Atom][] {
  if (v === undefined) return []
  if (!isTagged(v, 'map')) throw new TypeError(`not a map: ${JSON.stringify(v)}`)
  return v[1] as [Atom, Atom][]
}

/** A map with string keys and string values as a plain object (other atoms are JSON-encoded). */
export function mapObject(v: Value | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, val] of mapEntries(v)) out[atomString(k)] = atomString(val)
  return out
}

/** The UUID string of a uuid atom. */
export function uuidOf(v: Value | undefined): string {
  if (!isUuidAtom(v)) throw new TypeError(`not a uuid: ${JSON.stringify(v)}`)
  return v[1]
}

/** The UUID strings of a set of uuids. */
export function uuidsOf(v: Value | undefined): string[] {
  return setValues(v).map((a) => uuidOf(a))
}

function atomString(a: Atom): string {
  return typeof a === 'string' ? a : Array.isArray(a) ? a[1] : String(a)
}
