/**
 * The shape of the codebase, checked on every test run:
 * - a folder's index.ts is its only door: production code outside a folder imports nothing but
 *   that folder (its index.ts) or files of its own folder and its ancestors;
 * - no production file over 500 lines, except those listed in OVER_500 (each still to be split;
 *   the list may only shrink: a listed file that got under the limit fails until it is removed).
 * - no production function over 120 lines, except those listed in OVER_120 (same rule: the list may
 *   only shrink). Measured with the TypeScript compiler's own parse, from a function's first token
 *   to its closing brace, so a closure's returned methods count towards the closure.
 * Tests are exempt: they reach into modules on purpose.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as ts from 'typescript'

const ROOT = path.join(__dirname, '..', '..', '..')
const PRODUCTION = ['cli', 'router', 'ipam', 'ipv4', 'proxy', 'dns', 'plugin', 'cni', 'k8s']
const MAX_LINES = 500
/** Known to be over MAX_LINES, to be split (CONTRIBUTING.md). Do not add to this list. */
const OVER_500 = new Set([
  'ipam/allocator.ts',
  'router/native/index.ts',
  'router/native/weave_native.c',
  'router/overlay/sleeve-overlay.ts',
])

const MAX_FUNCTION_LINES = 120
/**
 * Known to be over MAX_FUNCTION_LINES, keyed "file:function", to be split into named pieces. Do not
 * add to this list. (C functions in router/native are checked by their own test.)
 */
const OVER_120 = new Set([
  'dns/service.ts:createWeaveDns',
  'proxy/server.ts:createProxy',
  'router/attach-api.ts:createAttachApi',
  'router/mesh/memory-transport.ts:createMemoryNetwork',
  'router/mesh/tcp-transport.ts:createTcpTransport',
  'router/overlay-wiring.ts:wireOverlay',
  'router/overlay/fastdp.ts:createFastdp',
  'router/overlay/overlay-switch.ts:createOverlaySwitch',
  'router/overlay/ovs-overlay.ts:createOvsOverlay',
  'router/overlay/sleeve-overlay.ts:createSleeveOverlay',
  'router/overlay/vxlan-overlay.ts:createVxlanOverlay',
  'router/weaver.ts:createWeaver',
])

function sources(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return e.name === 'build' || e.name === 'node_modules' ? [] : sources(p)
    return /\.(ts|c)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : []
  })
}

const files = PRODUCTION.flatMap((d) => sources(path.join(ROOT, d)))

test('production code enters another folder only through its index.ts', () => {
  const bad: string[] = []
  for (const file of files.filter((f) => f.endsWith('.ts'))) {
    const dir = path.dirname(file)
    for (const m of fs.readFileSync(file, 'utf8').matchAll(/(?:from|import\()\s*'(\.[^']*)'/g)) {
      const target = path.resolve(dir, m[1])
      if (fs.existsSync(target) && fs.statSync(target).isDirectory()) continue // the folder's index.ts
      if (path.basename(target) === 'index') continue
      const targetDir = path.dirname(target)
      // its own folder, or a file of an ancestor folder (router/mesh/x.ts → router/deps)
      if (targetDir === dir || dir.startsWith(targetDir + path.sep)) continue
      bad.push(`${path.relative(ROOT, file)} imports ${m[1]}`)
    }
  }
  assert.equal(bad, [], `imports past a folder's door:\n${bad.join('\n')}`)
})

test(`no production file over ${MAX_LINES} lines but the listed ones, and the list only shrinks`, () => {
  const over = files
    .map((f) => ({ f: path.relative(ROOT, f), n: fs.readFileSync(f, 'utf8').split('\n').length - 1 }))
    .filter((x) => x.n > MAX_LINES)
  const unlisted = over.filter((x) => !OVER_500.has(x.f)).map((x) => `${x.f} (${x.n})`)
  assert.equal(unlisted, [], `over ${MAX_LINES} lines: split them`)
  const fixed = [...OVER_500].filter((f) => !over.some((x) => x.f === f))
  assert.equal(fixed, [], 'now under the limit: remove from OVER_500')
})

/** A function's name: its own, or the variable or property it is bound to. */
function functionName(fn: ts.SignatureDeclaration, sf: ts.SourceFile): string {
  if (fn.name) return fn.name.getText(sf)
  const p = fn.parent
  if ((ts.isVariableDeclaration(p) || ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p)) && p.name) {
    return p.name.getText(sf)
  }
  return `(anonymous, line ${sf.getLineAndCharacterOfPosition(fn.getStart(sf)).line + 1})`
}

/** Every function-like node with a body, longer than `max` lines, as "file:name" → lines. */
function longFunctions(max: number): Map<string, number> {
  const long = new Map<string, number>()
  for (const file of files.filter((f) => f.endsWith('.ts'))) {
    const sf = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
    const visit = (n: ts.Node): void => {
      if (ts.isFunctionLike(n) && 'body' in n && n.body) {
        const first = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line
        const last = sf.getLineAndCharacterOfPosition(n.end).line
        const key = `${path.relative(ROOT, file)}:${functionName(n, sf)}`
        if (last - first + 1 > max) long.set(key, Math.max(last - first + 1, long.get(key) ?? 0))
      }
      ts.forEachChild(n, visit)
    }
    visit(sf)
  }
  return long
}

test(`no production function over ${MAX_FUNCTION_LINES} lines but the listed ones, and the list only shrinks`, () => {
  const long = longFunctions(MAX_FUNCTION_LINES)
  const unlisted = [...long].filter(([k]) => !OVER_120.has(k)).map(([k, n]) => `${k} (${n})`)
  assert.equal(unlisted, [], `over ${MAX_FUNCTION_LINES} lines: split them into named pieces`)
  const fixed = [...OVER_120].filter((k) => !long.has(k))
  assert.equal(fixed, [], 'now under the limit (or renamed): remove from OVER_120')
})

test.run()
