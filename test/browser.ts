/**
 * Headless Chromium for page tests (Debian's /usr/bin/chromium driven by playwright-core): a
 * fresh profile each launch, no network besides what the page asks for, and optionally inside a
 * lab host's network namespace (through an nsenter wrapper), so a page on that host's loopback
 * API is reachable and nothing else is.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-component-update', '--disable-sync']

/** Where tests leave screenshots (gitignored). */
export const ARTIFACT_DIR = path.resolve(__dirname, '..', '..', 'test-artifacts')

export function chromiumUnavailableReason(): string | undefined {
  if (!fs.existsSync(CHROMIUM)) return `no ${CHROMIUM} (Debian package chromium)`
  return undefined
}

export interface LaunchedBrowser {
  context: BrowserContext
  close(): Promise<void>
}

/** Launch Chromium with a fresh user-data dir; `netns`: run it inside /var/run/netns/NAME. */
export async function launchChromium(opts: { netns?: string } = {}): Promise<LaunchedBrowser> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-chromium-'))
  let exe = CHROMIUM
  if (opts.netns) {
    exe = path.join(dir, 'chromium-in-netns')
    fs.writeFileSync(exe, `#!/bin/sh\nexec nsenter --net=/var/run/netns/${opts.netns} ${CHROMIUM} "$@"\n`, { mode: 0o755 })
  }
  const profile = path.join(dir, 'profile')
  fs.mkdirSync(profile)
  const context = await chromium.launchPersistentContext(profile, { executablePath: exe, args: ARGS, headless: true, timeout: 60_000 })
  return {
    context,
    close: async () => {
      await context.close().catch(() => {})
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}
