/**
 * Bring a lab up and down by hand:
 *   npm run lab -- up N [--docker] [--ovs]   one lab named `wlabm` that outlives this command
 *   npm run lab -- down                      remove it
 *   npm run lab -- sweep                     remove leftovers of killed test runs (and wlabm)
 *   npm run lab -- exec HOST CMD...          run CMD in host HOST (h1, h2, ...) of wlabm
 *   npm run lab -- status                    list labs present on this machine
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createLab } from './lab'
import { destroyLab, listNamespaces, names, presentLabs, sweep } from './sweep'

const MANUAL = 'wlabm'

async function up(args: string[]): Promise<void> {
  const n = Number(args.find((a) => /^\d+$/.test(a)) ?? 2)
  if (presentLabs().includes(MANUAL)) throw new Error(`${MANUAL} is already up; run "npm run lab -- down" first`)
  const lab = await createLab({ hosts: n, docker: args.includes('--docker'), ovs: args.includes('--ovs'), prefix: MANUAL })
  lab.detach()
  const info = lab.hosts.map((h) => ({ name: h.name, ns: h.ns, underlayIp: h.underlayIp, dockerHost: h.dockerHost, ovsSocket: h.ovsSocket, weaveEnv: h.weaveEnv() }))
  fs.writeFileSync(path.join(lab.dir, 'hosts.json'), JSON.stringify(info, null, 2))
  for (const h of info) {
    console.log(`${h.name}  ns=${h.ns}  ${h.underlayIp}${h.dockerHost ? `  DOCKER_HOST=${h.dockerHost}` : ''}${h.ovsSocket ? `  WEAVE_OVSDB=unix:${h.ovsSocket}` : ''}`)
  }
  console.log(`lab ${MANUAL} is up (dir ${lab.dir}); "npm run lab -- down" removes it`)
}

function exec(args: string[]): number {
  const [host, ...cmd] = args
  const ns = /^h\d+$/.test(host ?? '') ? names.ns(MANUAL, Number(host.slice(1))) : host
  if (!ns || !listNamespaces().includes(ns) || !cmd.length) {
    console.error('usage: npm run lab -- exec HOST CMD...   (HOST: h1, h2, ... of the lab brought up with "up")')
    return 2
  }
  let env = process.env
  try {
    const info = JSON.parse(fs.readFileSync(path.join(names.dir(MANUAL), 'hosts.json'), 'utf8')) as { ns: string; weaveEnv: Record<string, string> }[]
    env = { ...env, ...info.find((h) => h.ns === ns)?.weaveEnv }
  } catch { /* no info: plain env */ }
  const r = spawnSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: 'inherit', env })
  return r.status ?? 1
}

async function main(): Promise<number> {
  const [cmd, ...rest] = process.argv.slice(2)
  switch (cmd) {
    case 'up': await up(rest); return 0
    case 'down': {
      const r = destroyLab(MANUAL)
      console.log(`removed ${MANUAL}: ${r.namespaces.length} namespaces, ${r.killed} processes${r.survivors.length ? `, survivors ${r.survivors.join(' ')}` : ''}`)
      return r.survivors.length ? 1 : 0
    }
    case 'sweep': {
      const rs = sweep({ includeManual: true })
      for (const r of rs) console.log(`removed ${r.prefix}: ${r.namespaces.length} namespaces, ${r.killed} processes`)
      if (!rs.length) console.log('nothing to sweep')
      return 0
    }
    case 'exec': return exec(rest)
    case 'status': {
      for (const p of presentLabs()) console.log(p, listNamespaces().filter((n) => n.startsWith(p + '-h')).join(' '))
      return 0
    }
    default:
      console.error('usage: npm run lab -- up N [--docker] [--ovs] | down | sweep | exec HOST CMD... | status')
      return 2
  }
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(err instanceof Error ? err.message : err)
  process.exit(1)
})
