/**
 * The netlink worker thread (see attach-native.ts): runs native attaches one message each, so
 * a wait for the kernel's rtnl lock never stalls the daemon's event loop. The addon's netlink
 * calls are used from this thread only while the worker runs.
 */
import { parentPort } from 'node:worker_threads'
import { nativeNetlink } from '../native'
import { afterAttach, runNativeAttach, runNativeDelete, type AttachFailure, type NativeAttachParams, type NativeDeleteParams } from './attach-native'

const nl = nativeNetlink()

type Message = { id: number; op?: undefined; params: NativeAttachParams } | { id: number; op: 'delete'; params: NativeDeleteParams }

parentPort?.on('message', (m: Message) => {
  const reply = (r: { ok?: unknown; err?: AttachFailure }) => parentPort!.postMessage({ id: m.id, ...r })
  if (!nl) { reply({ err: { message: 'native module unavailable in the netlink worker' } }); return }
  if (m.op === 'delete') {
    try { reply({ ok: runNativeDelete(nl, m.params) }) } catch (err) {
      const e = err as Error & { code?: string | number }
      reply({ err: { message: e.message, code: e.code, name: e.name } })
    }
    return
  }
  runNativeAttach(nl, m.params).then(
    (ok) => { reply({ ok }); afterAttach(nl, ok, m.params, true) },
    (e: Error & { code?: string | number }) => reply({ err: { message: e.message, code: e.code, name: e.name } }),
  )
})
