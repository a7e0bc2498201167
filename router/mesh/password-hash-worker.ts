/**
 * Worker thread body for derivePasswordKey (crypto.ts): Argon2id of the mesh password.
 *
 * Why a worker: Argon2id's "interactive" limit makes libsodium's WebAssembly heap grow by 64 MiB,
 * and a WebAssembly heap never shrinks; in the daemon's own thread those 64 MiB would stay
 * resident for the router's whole life. The worker's heap goes with the worker.
 */
import { parentPort, workerData } from 'node:worker_threads'
import sodium from 'libsodium-wrappers-sumo'

interface Job { password: string; salt: Uint8Array }

async function main(): Promise<void> {
  const job = workerData as Job
  await sodium.ready
  const bytes = sodium.crypto_pwhash(32, job.password, job.salt, sodium.crypto_pwhash_OPSLIMIT_INTERACTIVE,
    sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE, sodium.crypto_pwhash_ALG_ARGON2ID13)
  parentPort?.postMessage(bytes)
}

main().catch((err: Error) => {
  parentPort?.postMessage({ error: err.message })
})
