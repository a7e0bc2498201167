#!/usr/bin/env node
// `npm run bench -- NAME [args]`: runs the compiled benchmark dist/test/bench/NAME.js.
// Each benchmark measures its own baseline in the same run and prints one JSON object last.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const [name, ...rest] = process.argv.slice(2)
const dir = path.join(__dirname, '..', 'dist', 'test', 'bench')
const list = () => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.js')).map((f) => f.slice(0, -3)) : [])
if (!name) { console.error(`usage: npm run bench -- NAME   (one of: ${list().join(', ') || 'none built yet'})`); process.exit(2) }
const file = path.join(dir, `${name}.js`)
if (!fs.existsSync(file)) { console.error(`no benchmark named "${name}" (have: ${list().join(', ')}); did the build run?`); process.exit(2) }
const r = spawnSync(process.execPath, ['--enable-source-maps', file, ...rest], { stdio: 'inherit' })
process.exit(r.status ?? 1)
