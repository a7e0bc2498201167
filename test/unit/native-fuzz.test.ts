// libFuzzer on the addon's C parsing of received datagrams (router/native/pieces.c: sleeve piece
// runs, GRO message splitting), built with AddressSanitizer and UndefinedBehaviorSanitizer and
// run for a bounded time from a seed with a valid two-piece datagram. Any out-of-bounds access,
// overflow or broken contract (test/fuzz/pieces-fuzz.c) crashes it and fails this test.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { skipFile } from '../skip'

const ROOT = path.join(__dirname, '..', '..', '..')
const SECONDS = 20
const SANITIZE = ['-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=undefined']

/** Why the fuzzer cannot be built here (clang, libFuzzer or the sanitizer runtimes missing). */
function unavailable(dir: string): string | undefined {
  if (spawnSync('sh', ['-c', 'command -v clang']).status !== 0) return 'no clang (apt-get install clang)'
  const probe = path.join(dir, 'probe.c')
  fs.writeFileSync(probe, 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n')
  const r = spawnSync('clang', [...SANITIZE, '-o', path.join(dir, 'probe'), probe], { encoding: 'utf8' })
  return r.status === 0 ? undefined
    : `clang cannot link ${SANITIZE[0]} (apt-get install libfuzzer-14-dev libclang-rt-14-dev): ${r.stderr.split('\n')[0]}`
}

/** A collect-mode input (see the target's layout) holding one datagram cut in two valid pieces. */
function seed(): Buffer {
  const data = Buffer.alloc(30, 0xab)
  const piece = (off: number, bytes: Buffer) => {
    const h = Buffer.alloc(20)
    h.set([1, 3], 0) // sleeve version 1, kind piece, count 0
    h.writeUInt32BE(7, 8); h.writeUInt32BE(60, 12); h.writeUInt32BE(off, 16)
    return Buffer.concat([h, bytes])
  }
  const head = Buffer.alloc(14)
  head[0] = 2; head[1] = 0; head.writeUInt16LE(100, 2); head[4] = 0; head[5] = 2
  head.writeUInt32LE(7, 6); head.writeUInt16LE(60, 10); head.writeUInt16LE(0, 12)
  const entries = Buffer.alloc(12)
  entries.writeUInt16LE(0, 0); entries.writeUInt16LE(50, 2)
  entries.writeUInt16LE(50, 6); entries.writeUInt16LE(50, 8)
  return Buffer.concat([Buffer.of(0x00), head, entries, piece(0, data), piece(30, data)])
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-fuzz-'))
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
const why = unavailable(dir)
if (why) skipFile('libFuzzer on the native piece parsing', why)
else {
  test(`libFuzzer on the native piece parsing: ${SECONDS} s under ASan and UBSan, no crash`, async () => {
    const bin = path.join(dir, 'pieces-fuzz')
    const cc = spawnSync('clang', ['-g', '-O1', ...SANITIZE, '-I', path.join(ROOT, 'router', 'native'), '-o', bin,
      path.join(ROOT, 'test', 'fuzz', 'pieces-fuzz.c'), path.join(ROOT, 'router', 'native', 'pieces.c')], { encoding: 'utf8' })
    assert.is(cc.status, 0, cc.stderr)
    const corpus = path.join(dir, 'corpus')
    fs.mkdirSync(corpus)
    fs.writeFileSync(path.join(corpus, 'two-pieces'), seed())
    // -timeout: one input taking 5 s is a hang (a failure); the whole run is bounded by SECONDS
    const args = [`-max_total_time=${SECONDS}`, '-timeout=5', '-rss_limit_mb=1024', '-print_final_stats=1', `-artifact_prefix=${dir}/`, corpus]
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { out += d.toString() })
    const kill = setTimeout(() => child.kill('SIGKILL'), (SECONDS + 60) * 1000)
    const code = await new Promise<number | null>((res) => child.on('close', res))
    clearTimeout(kill)
    const crash = fs.readdirSync(dir).filter((f) => /^(crash|timeout|oom|leak)-/.test(f))
    assert.is(code, 0, `the fuzzer failed (${crash.join(', ')}):\n${out.split('\n').slice(-40).join('\n')}`)
    const runs = Number(/Done (\d+) runs/.exec(out)?.[1] ?? 0)
    console.log(`  pieces-fuzz: ${runs} inputs in ${SECONDS} s, ${/new_units_added:\s+(\d+)/.exec(out)?.[1] ?? '?'} new corpus units`)
    assert.ok(runs > 10_000, `only ${runs} runs:\n${out.slice(-2000)}`)
  })
}

test.run()
