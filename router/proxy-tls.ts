/**
 * The proxy's TLS files (`--tls`, `--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`) read at
 * start, each failure naming its flag and file, so `weave launch` says what to fix.
 */
import * as fs from 'node:fs'
import type { ProxyTls } from '../proxy'
import type { WeaverConfig } from './config'

export function loadProxyTls(config: Pick<WeaverConfig, 'proxyTls' | 'proxyListen'>): ProxyTls | undefined {
  const t = config.proxyTls
  if (!t) return undefined
  if (!config.proxyListen.some((l) => l.startsWith('tcp://'))) {
    throw new Error('--tls/--tlsverify: the proxy has no TCP listener to secure (add -H tcp://HOST:PORT); unix sockets are never TLS')
  }
  const read = (flag: string, file: string) => {
    try {
      return fs.readFileSync(file)
    } catch (err) {
      throw new Error(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  return {
    cert: read('--tlscert', t.cert),
    key: read('--tlskey', t.key),
    // without --tlsverify the CA is optional (Docker's --tls: no client certificates asked)
    ...(t.verify || fs.existsSync(t.caCert) ? { ca: read('--tlscacert', t.caCert) } : {}),
    verifyClients: t.verify,
  }
}
