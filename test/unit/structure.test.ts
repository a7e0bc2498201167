/**
 * The shape of the codebase, checked on every test run:
 * - a folder's index.ts is its only door: production code outside a folder imports nothing but
 *   that folder (its index.ts) or files of its own folder and its ancestors;
 * - no production file over 500 lines, except those listed in OVER_500 (each still to be split;
 *   the list may only shrink: a listed file that got under the limit fails until it is removed).
 * - no production function over 120 lines, except those listed in OVER_120 (same rule: the list may
 *   only shrink). Measured with the TypeScript compiler's own parse, from a function's first token
 *   to its closing brace, so a closure's returned methods count towards the closure. The native
 *   addon's C functions (router/native) have the same limit and no exceptions, measured by a brace
 *   scanner from the line their definition starts on to their closing brace.
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
const OVER_500 = new Set<string>([])

const MAX_FUNCTION_LINES = 120
/**
 * Known to be over MAX_FUNCTION_LINES, keyed "file:function", to be split into named pieces. Do not
 * add to this list. (C functions in router/native are checked by the last test, without a list.)
 */
const OVER_120 = new Set<string>([])

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

/**
 * The functions defined in C source `text`, with the lines each spans: a scanner that blanks
 * comments, string and character literals and preprocessor lines (keeping line breaks), then
 * takes every `{` at file scope whose text since the previous `;` or `}` ends in `name(...)` with
 * no `=` (not an initializer, struct or enum) as a function body and follows braces to its end.
 */
function cFunctions(text: string): Array<{ name: string; line: number; lines: number }> {
  const blank = (m: string) => m.replace(/[^\n]/g, ' ')
  const src = text
    .replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'/g, blank)
    .replace(/^[ \t]*#(?:[^\n]*\\\n)*[^\n]*/gm, blank)
  const lineAt = (i: number) => src.slice(0, i).split('\n').length
  const out: Array<{ name: string; line: number; lines: number }> = []
  let depth = 0, from = 0, open: { name: string; line: number } | undefined
  for (let i = 0; i < src.length; i++) {
    const c = src[i]
    if (c === '{') {
      if (depth === 0) {
        const head = src.slice(from, i)
        const m = /([A-Za-z_]\w*)\s*\([^;{}]*\)\s*$/.exec(head)
        open = m && !head.includes('=') ? { name: m[1], line: lineAt(from + head.search(/\S/)) } : undefined
      }
      depth++
    } else if (c === '}') {
      depth--
      if (depth === 0) {
        if (open) out.push({ ...open, lines: lineAt(i) - open.line + 1 })
        open = undefined
        from = i + 1
      }
    } else if (c === ';' && depth === 0) from = i + 1
  }
  return out
}

test(`no C function of the native addon over ${MAX_FUNCTION_LINES} lines`, () => {
  const dir = path.join(ROOT, 'router', 'native')
  const found = fs.readdirSync(dir).filter((f) => /\.[ch]$/.test(f)).flatMap((f) =>
    cFunctions(fs.readFileSync(path.join(dir, f), 'utf8')).map((fn) => ({ ...fn, file: `router/native/${f}` })))
  // the scanner sees the functions it should: a broken one would pass everything
  assert.ok(found.some((fn) => fn.file === 'router/native/weave_native.c' && fn.name === 'init'), 'the module init is found')
  assert.ok(found.length > 80, `only ${found.length} C functions found`)
  const long = found.filter((fn) => fn.lines > MAX_FUNCTION_LINES).map((fn) => `${fn.file}:${fn.line} ${fn.name} (${fn.lines})`)
  assert.equal(long, [], `over ${MAX_FUNCTION_LINES} lines: split them into named steps`)
})

test('the C function scanner measures what it should', () => {
  const text = [
    '/* a comment with { and } */',
    '#define BODY(x) do { x; } while (0)',
    'static const int table[] = { 1, 2 };',
    'typedef struct { int a; } pair_t;',
    'static int f(int a,',
    '             int b) {',
    '  const char *s = "}";',
    "  if (a) { return '{'; }",
    '  return b;',
    '}',
    'void g(void) { }',
  ].join('\n')
  assert.equal(cFunctions(text), [{ name: 'f', line: 5, lines: 6 }, { name: 'g', line: 11, lines: 1 }])
})

test.run()
