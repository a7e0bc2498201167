/**
 * The recorded-response API server (recorded-apiserver.ts) as a process of its own, so a lab host
 * can run it where other lab hosts reach it: `node recorded-apiserver-main.js HOST NODES.json DIR`.
 * Writes DIR/server.json ({url, token}) and DIR/ca.crt + DIR/token (a service account dir) once
 * listening, and DIR/state.json (nodes, ConfigMaps, requests) after every request. A request
 * `DELETE /test/nodes/NAME` (with the token) removes a node, as a cluster does when one leaves.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { RecordedApiServer } from './recorded-apiserver'

async function main(): Promise<void> {
  const [host, nodesFile, dir] = process.argv.slice(2)
  const s = new RecordedApiServer({ host, certDir: dir, nodes: (JSON.parse(fs.readFileSync(nodesFile, 'utf8')) as { items: unknown[] }).items })
  s.onRequest = () => {
    fs.writeFileSync(path.join(dir, 'state.json.tmp'), JSON.stringify(s.dump()))
    fs.renameSync(path.join(dir, 'state.json.tmp'), path.join(dir, 'state.json'))
  }
  await s.start()
  fs.writeFileSync(path.join(dir, 'ca.crt'), s.ca)
  fs.writeFileSync(path.join(dir, 'token'), s.token)
  fs.writeFileSync(path.join(dir, 'server.json'), JSON.stringify({ url: s.url, token: s.token }))
}

void main()
