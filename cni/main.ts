/**
 * The `weave-net` CNI plugin's process: CNI_* variables and the network configuration on stdin
 * in, a result or error JSON on stdout out (exit 0 or 1). Installed by `weave setup-cni` behind a
 * small shell wrapper. Loads only this folder's few modules and node's `fs` and `net`: every
 * pod start pays for this process's start-up.
 */
import * as fs from 'node:fs'
import { runPlugin } from './plugin'
import { callRouter } from './router-client'

function readStdin(): string {
  try {
    return fs.readFileSync(0, 'utf8')
  } catch {
    return '' // no stdin (closed, or a terminal that would block): VERSION still answers
  }
}

const defaultSocket = `${process.env.WEAVE_RUN_DIR || '/run/weave'}/api.sock`
void runPlugin({ env: process.env, stdin: readStdin(), defaultSocket }, callRouter).then((r) => {
  if (r.stdout) process.stdout.write(r.stdout + '\n')
  process.exitCode = r.exitCode
})
