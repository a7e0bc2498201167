// The addon's handles are type-tagged (napi_type_tag_object): a socket handle where an AEAD
// context is expected, or the other way round, throws a TypeError instead of being read as the
// wrong struct. The addon is loaded directly to call its raw functions with the wrong handle.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as path from 'node:path'
import { execFileSync } from 'node:child_process'
import { skipFile } from '../skip'

const ROOT = path.join(__dirname, '..', '..', '..')
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the raw addon, called with deliberately wrong handles
const addon: any = require(path.join(ROOT, 'router', 'native', 'build', 'weave_native.node'))

const sock = addon.udpOpen('127.0.0.1', 0, null, 0, 0)
const ctx = addon.aeadContext?.(1, new Uint8Array(32))

test.after(() => addon.close(sock))

test('a socket handle works as one', () => {
  assert.ok(addon.localPort(sock) > 0)
})

if (!ctx) skipFile('AEAD handles', 'the addon has no AEAD contexts here (neither libcrypto nor libsodium found)')
else {
  test('an AEAD context where a socket is expected throws a TypeError', () => {
    for (const call of [() => addon.localPort(ctx), () => addon.features(ctx), () => addon.fd(ctx), () => addon.close(ctx),
      () => addon.recvBatch(ctx, Buffer.alloc(2048), 2048, 1, new Uint32Array(64), new Int32Array(64), null, null),
      () => addon.sendBatch(ctx, [Buffer.alloc(10)], Uint32Array.of(0x7f000001), Uint16Array.of(9), new Int32Array(1))]) {
      assert.throws(call, (e: Error) => e instanceof TypeError && /not a socket handle/.test(e.message))
    }
  })

  test('a socket where an AEAD context is expected throws a TypeError', () => {
    const buf = new Uint8Array(64)
    for (const call of [() => addon.aeadCtxSeal(sock, 0, 1, buf, 16), () => addon.aeadCtxOpen(sock, 0, 1, buf, 16),
      () => addon.aeadCtxSealv(sock, 0, 1, buf, 16, [buf.subarray(0, 8)]),
      () => addon.aeadCtxPiece(sock, 0, buf, buf.subarray(0, 8), 0, 64), () => addon.aeadCtxPiecesDone(sock, buf),
      () => addon.collectPieces(Buffer.alloc(64), new Uint32Array(1), new Int32Array(1), new Uint32Array(1), new Uint16Array(1), 0, 1,
        new Uint32Array(5), Buffer.alloc(64), sock, 0)]) {
      assert.throws(call, (e: Error) => e instanceof TypeError)
    }
    // the right handle still works: seal then open round-trips
    const b = Uint8Array.from({ length: 64 }, (_, i) => i)
    addon.aeadCtxSeal(ctx, 0, 1, b, 16)
    assert.ok(addon.aeadCtxOpen(ctx, 0, 1, b, 16))
  })
}

test('the addon is built hardened: stack protector, fortified libc calls, BIND_NOW', () => {
  const file = path.join(ROOT, 'router', 'native', 'build', 'weave_native.node')
  const syms = execFileSync('readelf', ['-sW', file], { encoding: 'utf8' })
  assert.match(syms, /__stack_chk_fail/, '-fstack-protector-strong')
  assert.match(syms, /__\w+_chk@/, '-D_FORTIFY_SOURCE=2')
  assert.match(execFileSync('readelf', ['-dW', file], { encoding: 'utf8' }), /BIND_NOW|FLAGS_1.*NOW/, '-z now')
})

test.run()
