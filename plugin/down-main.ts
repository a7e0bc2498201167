/**
 * Entry of the router-down responder (down-responder.ts): `node down-main.js SOCKET CALL...`.
 * Spawned detached by the stopping daemon; tells it (over IPC) once it listens.
 */
import { nullLogger } from '../router/deps'
import { runDownResponder } from './down-responder'

const [socketPath, ...names] = process.argv.slice(2)
if (!socketPath) {
  process.stderr.write('usage: down-main.js SOCKET CALL...\n')
  process.exit(2)
}
process.title = 'weave-plugin-down'
runDownResponder(socketPath, names, nullLogger).then(
  () => { process.send?.('listening'); process.disconnect?.() },
  (err: Error) => { process.stderr.write(`${err.message}\n`); process.exit(1) },
)
