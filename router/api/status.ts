/**
 * The status and report model. Each component contributes a status section (the
 * `Service: ...` blocks of `weave status`) and a report entry (a key of `weave report`'s JSON).
 * Text layout follows Weave's: keys right-aligned to a common column, sections separated by a
 * blank line.
 */

/** One block of `weave status`: ordered key/value lines, the first usually `Service`. */
export type StatusLines = Array<[key: string, value: string]>

export interface StatusSection {
  /** Lower comes first; the router is 10, ipam 20, proxy 30. */
  order: number
  lines(): StatusLines
}

/**
 * weave-ts never phones home: Weave's text and JSON for a disabled version check (its
 * checkpoint.IsCheckDisabled()), so scripts that read either keep working.
 */
const VERSION_CHECK_TEXT = 'version check update disabled'
const VERSION_CHECK = { Enabled: false, Success: false, NewVersion: '', NextCheckAt: '0001-01-01T00:00:00Z' } as const

export class StatusModel {
  private readonly sections = new Map<string, StatusSection>()
  private readonly reports = new Map<string, () => unknown>()
  /** Weave's `Ready`: every component started (the daemon sets it at the end of start()). */
  ready = false

  constructor(private readonly version: string) {}

  addSection(name: string, section: StatusSection): void {
    if (this.sections.has(name)) throw new Error(`status section ${name} registered twice`)
    this.sections.set(name, section)
  }

  addReport(key: string, fn: () => unknown): void {
    if (this.reports.has(key)) throw new Error(`report key ${key} registered twice`)
    this.reports.set(key, fn)
  }

  /** The text of `weave status`. */
  text(): string {
    const blocks: StatusLines[] = [[['Version', `${this.version} (${VERSION_CHECK_TEXT})`]]]
    const ordered = [...this.sections.values()].sort((a, b) => a.order - b.order)
    for (const s of ordered) blocks.push(s.lines())
    return formatBlocks(blocks)
  }

  /** The JSON of `weave report`. */
  report(): Record<string, unknown> {
    const out: Record<string, unknown> = { Ready: this.ready, Version: this.version, VersionCheck: { ...VERSION_CHECK } }
    for (const [key, fn] of this.reports) out[key] = fn()
    return out
  }
}

/** Right-align every key of every block to one column, as `weave status` does. */
export function formatBlocks(blocks: StatusLines[]): string {
  // Weave's column: keys end at column 15 unless one is longer.
  const width = Math.max(15, ...blocks.flat().map(([k]) => k.length + 1))
  return (
    blocks
      .map((lines) => lines.map(([k, v]) => `${k.padStart(width)}: ${v}`).join('\n'))
      .join('\n\n') + '\n'
  )
}
