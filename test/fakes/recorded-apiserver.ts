/**
 * THE ONE FAKE of this project: a small Kubernetes API server answering the five calls k8s/ makes,
 * from a recorded node list (test/fixtures/k8s/nodes.json, the shape `kubectl get --raw
 * /api/v1/nodes` gives on a kubeadm cluster) and with the API server's own semantics where the
 * add-on depends on them: bearer-token auth, ConfigMaps with resourceVersion (a PUT carrying a
 * stale one is 409 Conflict, a second POST 409 AlreadyExists), strategic merge of node status
 * conditions by `type`. There is no kubelet or API server on these machines; this stands in for
 * one, over real HTTPS (a throwaway self-signed certificate from openssl), and records every
 * request for the tests to assert on.
 */
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as https from 'node:https'
import * as os from 'node:os'
import * as path from 'node:path'
import type { AddressInfo } from 'node:net'

export interface RecordedRequest {
  method: string
  path: string
  contentType?: string
  body?: any
  /** The status answered. */
  status?: number
}

interface StoredConfigMap { rv: number; obj: any }

const FIXTURE = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'k8s', 'nodes.json')

export class RecordedApiServer {
  readonly token = 'recorded-token-' + process.pid
  readonly requests: RecordedRequest[] = []
  nodes: any[]
  private readonly configMaps = new Map<string, StoredConfigMap>()
  private rv = 50_000
  private server: https.Server | undefined
  private dir: string | undefined
  ca = ''
  url = ''
  /** Called before a ConfigMap write is applied (tests interleave other writers here). */
  beforeWrite: ((req: RecordedRequest) => Promise<void>) | undefined
  /** Called after every answered request. */
  onRequest: (() => void) | undefined
  private readonly host: string
  private readonly certDir: string | undefined

  /**
   * `nodes`: the node list to serve (default: the recorded fixture); `host`: address to listen on;
   * `certDir`: where the throwaway key and certificate go (default a temp dir stop() removes; a
   * server in a lab host puts them in the lab's dir, which teardown removes even after a SIGKILL).
   */
  constructor(opts: { host?: string; nodes?: any[]; certDir?: string } = {}) {
    this.host = opts.host ?? '127.0.0.1'
    this.certDir = opts.certDir
    this.nodes = opts.nodes ?? (JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as { items: any[] }).items
  }

  /** Everything the server holds and saw (for a test in another process). */
  dump(): { nodes: any[]; configMaps: Record<string, any>; requests: RecordedRequest[] } {
    return { nodes: this.nodes, configMaps: Object.fromEntries([...this.configMaps].map(([k, v]) => [k, v.obj])), requests: this.requests }
  }

  async start(): Promise<void> {
    if (!this.certDir) this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'k8s-fake-'))
    const d = this.certDir ?? this.dir!
    const key = path.join(d, 'key.pem'), cert = path.join(d, 'cert.pem')
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', `/CN=${this.host}`, '-addext', `subjectAltName=IP:${this.host}`, '-keyout', key, '-out', cert], { stdio: 'ignore' })
    this.ca = fs.readFileSync(cert, 'utf8')
    const s = https.createServer({ key: fs.readFileSync(key), cert: this.ca }, (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        const rec: RecordedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', contentType: req.headers['content-type'], body: text ? JSON.parse(text) : undefined }
        this.requests.push(rec)
        const reply = (status: number, body: unknown) => {
          rec.status = status
          res.writeHead(status, { 'content-type': 'application/json' })
          res.end(JSON.stringify(body))
          this.onRequest?.()
        }
        if (req.headers.authorization !== `Bearer ${this.token}`) return reply(401, status(401, 'Unauthorized', 'Unauthorized'))
        this.handle(rec).then(([st, body]) => reply(st, body), (err: Error) => reply(500, status(500, 'InternalError', err.message)))
      })
    })
    await new Promise<void>((resolve) => s.listen(0, this.host, resolve))
    this.server = s
    this.url = `https://${this.host}:${(s.address() as AddressInfo).port}`
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => { if (this.server) this.server.close(() => resolve()); else resolve() })
    this.server?.closeAllConnections()
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true })
  }

  configMap(ns: string, name: string): any {
    return this.configMaps.get(`${ns}/${name}`)?.obj
  }

  /** Remove a node (it left the cluster). */
  deleteNode(name: string): void {
    this.nodes = this.nodes.filter((n) => n.metadata.name !== name)
  }

  private async handle(r: RecordedRequest): Promise<[number, unknown]> {
    const url = new URL(r.path, 'https://x')
    const p = url.pathname
    const gone = /^\/test\/nodes\/([^/]+)$/.exec(p)
    if (gone && r.method === 'DELETE') { this.deleteNode(decodeURIComponent(gone[1])); return [200, {}] }
    if (r.method === 'GET' && p === '/api/v1/nodes') return [200, { kind: 'NodeList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items: this.nodes }]
    let m = /^\/api\/v1\/nodes\/([^/]+)\/status$/.exec(p)
    if (m && r.method === 'PATCH') {
      if (r.contentType !== 'application/strategic-merge-patch+json') return [415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format: ${r.contentType}`)]
      const node = this.nodes.find((n) => n.metadata.name === decodeURIComponent(m![1]))
      if (!node) return [404, status(404, 'NotFound', `nodes "${m[1]}" not found`)]
      const conds: any[] = node.status.conditions ?? []
      for (const c of r.body?.status?.conditions ?? []) {
        const i = conds.findIndex((x) => x.type === c.type)
        if (i >= 0) conds[i] = { ...conds[i], ...c }
        else conds.push(c)
      }
      node.status.conditions = conds
      return [200, node]
    }
    m = /^\/api\/v1\/namespaces\/([^/]+)\/configmaps(?:\/([^/]+))?$/.exec(p)
    if (m) {
      const [ns, name] = [decodeURIComponent(m[1]), m[2] && decodeURIComponent(m[2])]
      const key = `${ns}/${name ?? r.body?.metadata?.name}`
      const cur = this.configMaps.get(key)
      if (r.method === 'GET' && name) return cur ? [200, cur.obj] : [404, status(404, 'NotFound', `configmaps "${name}" not found`)]
      if (r.method === 'POST' && !name) {
        await this.beforeWrite?.(r)
        if (this.configMaps.has(key)) return [409, status(409, 'AlreadyExists', `configmaps "${r.body.metadata.name}" already exists`)]
        return [201, this.store(key, r.body)]
      }
      if (r.method === 'PUT' && name) {
        await this.beforeWrite?.(r)
        const now = this.configMaps.get(key)
        if (!now) return [404, status(404, 'NotFound', `configmaps "${name}" not found`)]
        if (r.body?.metadata?.resourceVersion !== String(now.rv)) {
          return [409, status(409, 'Conflict', `Operation cannot be fulfilled on configmaps "${name}": the object has been modified; please apply your changes to the latest version and try again`)]
        }
        return [200, this.store(key, r.body)]
      }
    }
    return [404, status(404, 'NotFound', `the server could not find the requested resource (${r.method} ${p})`)]
  }

  private store(key: string, obj: any): any {
    const rv = ++this.rv
    const stored = { ...obj, kind: 'ConfigMap', apiVersion: 'v1', metadata: { ...obj.metadata, resourceVersion: String(rv) } }
    this.configMaps.set(key, { rv, obj: stored })
    return stored
  }
}

function status(code: number, reason: string, message: string) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }
}
