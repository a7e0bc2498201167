/**
 * The topology page's two static files, served from the API's own origin as they are in the
 * repository (router/ui/page: plain HTML and JavaScript, nothing to build). Read once, on first
 * request.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { ApiRouter } from '../api'

/** router/ui/page in the repository, from this file's place in source (tests) or dist/. */
export function pageDir(): string {
  const up = __dirname.split(path.sep).includes('dist') ? ['..', '..', '..'] : ['..', '..']
  return path.resolve(__dirname, ...up, 'router', 'ui', 'page')
}

const HEADERS = {
  'cache-control': 'no-cache',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // Only this origin: its script, its WebSocket; inline styles of the page itself.
  'content-security-policy': "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'",
}

export function registerPageRoutes(router: ApiRouter, dir = pageDir()): void {
  const cache = new Map<string, string>()
  const file = (name: string) => {
    let t = cache.get(name)
    if (t === undefined) cache.set(name, (t = fs.readFileSync(path.join(dir, name), 'utf8')))
    return t
  }
  router.route('GET', '/ui', () => ({ text: file('index.html'), headers: { ...HEADERS, 'content-type': 'text/html; charset=utf-8' } }))
  router.route('GET', '/ui/app.js', () => ({ text: file('app.js'), headers: { ...HEADERS, 'content-type': 'text/javascript; charset=utf-8' } }))
}
