/**
 * The netlink worker thread (see attach-native.ts): runs native attaches one message each, so
 * a wait for the kernel's rtnl lock never stalls the daemon's event loop. The addon's netlink
 * calls are used from this thread only while the worker runs.
 */
import { parentPort } from 'node:worker_threads'
import { nativeNetlink } from '../native'
import { afterAttach, runNativeAttach, type AttachFailure, type NativeAttachParams } from './attach-native'

const nl = nativeNetlink()

parentPort?.on('message', (m: { id: number; params: NativeAttachParams }) => {
  const reply = (r: { ok?: unknown; err?: AttachFailure }) => parentPort!.postMessage({ id: m.id, ...r })
  if (!nl) { reply({ err: { message: 'native module unavailable in the netlink worker' } }); return }
  runNativeAttach(nl, m.params).then(
    (ok) => { reply({ ok }); afterAttach(nl, ok, m.params, true) },
    (e: Error & { code?: string | number }) => reply({ err: { message: e.message, code: e.code, name: e.name } }),
  )
})
