/**
 * The few Kubernetes REST calls the add-on makes, over plain HTTPS with the pod's service account
 * (node's `https` with the cluster CA; no client library: five calls do not need one).
 *
 *   GET   /api/v1/nodes                                   node list (peers, liveness)
 *   GET   /api/v1/namespaces/NS/configmaps/NAME           the peer list and reclaim locks
 *   POST  /api/v1/namespaces/NS/configmaps                create it the first time
 *   PUT   /api/v1/namespaces/NS/configmaps/NAME           replace, with resourceVersion (409 = lost a race)
 *   PATCH /api/v1/nodes/NAME/status                       NetworkUnavailable=False (strategic merge)
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as https from 'node:https'
import type { KubeNode } from './peers'
import type { Annotations } from './reclaim'

export interface KubeApiConfig {
  /** `https://host:port` (an `http://` URL only for a test's recorded-response server). */
  server: string
  token?: string
  ca?: string | Buffer
  timeoutMs?: number
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'

/** The in-cluster configuration every pod gets: service env variables and the service account files. */
export function inClusterConfig(env: Record<string, string | undefined>, saDir: string = SA_DIR): KubeApiConfig {
  const host = env.KUBERNETES_SERVICE_HOST
  const port = env.KUBERNETES_SERVICE_PORT ?? '443'
  if (!host) throw new Error('KUBERNETES_SERVICE_HOST is not set: not running in a Kubernetes pod?')
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    token: fs.readFileSync(`${saDir}/token`, 'utf8').trim(),
    ca: fs.readFileSync(`${saDir}/ca.crt`),
  }
}

export class KubeApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
    this.name = 'KubeApiError'
  }
}

export interface ConfigMapState {
  resourceVersion: string
  annotations: Annotations
}

export class KubeApi {
  constructor(private readonly config: KubeApiConfig) {}

  async listNodes(): Promise<KubeNode[]> {
    const r = await this.request('GET', '/api/v1/nodes')
    return ((r.body as { items?: KubeNode[] }).items ?? [])
  }

  async getConfigMap(ns: string, name: string): Promise<ConfigMapState | undefined> {
    const r = await this.request('GET', cmPath(ns, name), undefined, undefined, [404])
    if (r.status === 404) return undefined
    const m = (r.body as { metadata?: { resourceVersion?: string; annotations?: Annotations } }).metadata ?? {}
    return { resourceVersion: m.resourceVersion ?? '', annotations: m.annotations ?? {} }
  }

  /** false when someone else created it first (409). */
  async createConfigMap(ns: string, name: string, annotations: Annotations): Promise<boolean> {
    const r = await this.request('POST', `/api/v1/namespaces/${ns}/configmaps`,
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns, annotations } }, 'application/json', [409])
    return r.status !== 409
  }

  /** Compare-and-swap on resourceVersion: false when the ConfigMap changed since it was read (409). */
  async replaceConfigMap(ns: string, name: string, state: ConfigMapState): Promise<boolean> {
    const r = await this.request('PUT', cmPath(ns, name), {
      apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns, resourceVersion: state.resourceVersion, annotations: state.annotations },
    }, 'application/json', [409])
    return r.status !== 409
  }

  async patchNodeStatus(node: string, patch: unknown, contentType: string): Promise<void> {
    await this.request('PATCH', `/api/v1/nodes/${encodeURIComponent(node)}/status`, patch, contentType)
  }

  /** One request; statuses outside 2xx and `allowed` throw KubeApiError with the server's message. */
  request(method: string, path: string, body?: unknown, contentType?: string, allowed: number[] = []): Promise<{ status: number; body: unknown }> {
    const url = new URL(path, this.config.server)
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const mod = url.protocol === 'https:' ? https : http
    return new Promise((resolve, reject) => {
      const req = mod.request(url, {
        method,
        ca: this.config.ca,
        timeout: this.config.timeoutMs ?? 15_000,
        headers: {
          accept: 'application/json',
          ...(this.config.token ? { authorization: `Bearer ${this.config.token}` } : {}),
          ...(payload ? { 'content-type': contentType ?? 'application/json', 'content-length': payload.length } : {}),
        },
      }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let parsed: unknown = text
          try { parsed = JSON.parse(text) } catch { /* not JSON */ }
          const status = res.statusCode ?? 0
          if ((status >= 200 && status < 300) || allowed.includes(status)) resolve({ status, body: parsed })
          else reject(new KubeApiError(status, `${method} ${path}: HTTP ${status} ${(parsed as { message?: string })?.message ?? text.slice(0, 200)}`))
        })
      })
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer from ${this.config.server}`)))
      req.on('error', reject)
      req.end(payload)
    })
  }
}

function cmPath(ns: string, name: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(ns)}/configmaps/${encodeURIComponent(name)}`
}
