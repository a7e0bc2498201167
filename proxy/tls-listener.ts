/**
 * The proxy's TCP listener over TLS, as Docker's and Weave's (`--tls`, `--tlsverify`): the
 * certificate and key are served to clients; with `verifyClients` a client must present a
 * certificate signed by `ca`, else the handshake fails before any request is read. Unix
 * sockets stay plain (Weave: TCP listeners only).
 */
import * as net from 'node:net'
import * as tls from 'node:tls'
import type { ProxyTls } from './types'

/** A server whose connections are TLS (TLSSocket is a net.Socket: the proxy's routing is unchanged). */
export function createTlsServer(t: ProxyTls, onSocket: (s: net.Socket) => void, onError: (err: Error) => void): net.Server {
  const server = tls.createServer({
    cert: t.cert,
    key: t.key,
    ...(t.ca ? { ca: t.ca } : {}),
    requestCert: t.verifyClients,
    rejectUnauthorized: t.verifyClients,
    allowHalfOpen: true,
    // Docker's own default floor; Weave allowed TLS 1.0, which no current client needs
    minVersion: 'TLSv1.2',
  }, onSocket)
  // a client without (a good) certificate, or speaking plain HTTP: one line, not a crash
  server.on('tlsClientError', (err) => onError(err))
  return server
}
