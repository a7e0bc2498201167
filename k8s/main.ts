/**
 * The weave-net DaemonSet container's entry (`node dist/k8s/main.js`, see weave-daemonset.yaml):
 * start-up.ts with its real edges — the API server through the pod's service account, the router
 * as this process's child in the foreground (the container lives as long as it does), the CNI
 * plugin installed into the host's dirs with a copy of this node binary beside it (the kubelet's
 * runtime runs the plugin on the host, where weave-ts itself is not installed).
 *
 * Environment: NODE_NAME (spec.nodeName, required), WEAVE_STATE_DIR (/var/lib/weave),
 * WEAVE_RUN_DIR (/run/weave), CNI_BIN_DIR (/opt/cni/bin), CNI_CONF_DIR (/etc/cni/net.d),
 * WEAVE_EXTRA_ARGS (more router flags, space-separated); WEAVE_PASSWORD etc. reach the router;
 * WEAVE_KUBE_SA_DIR moves the service account files (tests).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { installCni } from '../cni'
import { ROUTER_NODE_FLAGS } from '../router'
import { KubeApi, inClusterConfig } from './api'
import { startUp } from './startup'

const env = process.env
const log = (line: string) => process.stderr.write(`${new Date().toISOString()} weave-kube: ${line}\n`)

function routerRequest(socketPath: string, method: string, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: p, method, timeout: 60_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('timeout', () => req.destroy(new Error(`router API ${p}: no answer`)))
    req.on('error', reject)
    req.end()
  })
}

/** Copy `src` to `dst` unless a file of the same size is there already (node is ~100 MB). */
function copyIfChanged(src: string, dst: string): void {
  const a = fs.statSync(src)
  try { if (fs.statSync(dst).size === a.size) return } catch { /* absent */ }
  fs.mkdirSync(path.dirname(dst), { recursive: true })
  fs.copyFileSync(src, `${dst}.tmp`)
  fs.chmodSync(`${dst}.tmp`, 0o755)
  fs.renameSync(`${dst}.tmp`, dst)
}

async function main(): Promise<void> {
  const nodeName = env.NODE_NAME
  if (!nodeName) throw new Error('NODE_NAME is not set (the manifest passes spec.nodeName)')
  const runDir = env.WEAVE_RUN_DIR ?? '/run/weave'
  const socket = path.join(runDir, 'api.sock')
  const binDir = env.CNI_BIN_DIR ?? '/opt/cni/bin'
  let router: ChildProcess | undefined
  const routerEnv = { ...env, WEAVE_STATE_DIR: env.WEAVE_STATE_DIR ?? '/var/lib/weave', WEAVE_RUN_DIR: runDir }
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => { router?.kill(sig) })

  await startUp({
    api: new KubeApi(inClusterConfig(env, env.WEAVE_KUBE_SA_DIR)),
    nodeName,
    async startRouter(args) {
      const extra = (env.WEAVE_EXTRA_ARGS ?? '').split(/\s+/).filter(Boolean)
      router = spawn(process.execPath, [...ROUTER_NODE_FLAGS, path.join(__dirname, '..', 'router', 'main.js'), ...extra, ...args], { stdio: 'inherit', env: routerEnv })
      router.on('exit', (code, signal) => {
        log(`router exited (${signal ?? `code ${code}`})`)
        process.exit(code ?? 1)
      })
      const deadline = Date.now() + 120_000
      for (;;) {
        const r = await routerRequest(socket, 'GET', '/report').catch(() => undefined)
        if (r?.status === 200) return { peerName: String((JSON.parse(r.body) as { Daemon: { PeerName: string } }).Daemon.PeerName) }
        if (Date.now() > deadline) throw new Error(`the router did not answer on ${socket} within 120 s`)
        await new Promise((res) => setTimeout(res, 250))
      }
    },
    async installCni() {
      const node = path.join(binDir, 'weave-net.d', 'node')
      copyIfChanged(process.execPath, node)
      const r = installCni({ binDir, confDir: env.CNI_CONF_DIR ?? '/etc/cni/net.d', socket, node })
      log(`CNI plugin ${r.plugin}; ${r.conflist}${r.conflistWritten ? '' : ' (kept)'}`)
    },
    async rmpeer(peer) {
      const r = await routerRequest(socket, 'DELETE', `/peer/${encodeURIComponent(peer)}`)
      if (r.status < 200 || r.status >= 300) throw new Error(`rmpeer ${peer}: HTTP ${r.status} ${r.body.trim()}`)
      log(r.body.trim())
    },
    now: () => new Date(),
    log,
  })
}

main().catch((err: Error) => {
  log(`start-up failed: ${err.message}`)
  process.exit(1)
})
