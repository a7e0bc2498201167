#!/usr/bin/env node
// Compiles the TypeScript with TypeScript 7 (the native compiler, installed as `typescript-native`),
// which is several times faster than TypeScript 6. TypeScript 6 stays installed as `typescript`
// because typescript-eslint's type-checked rules need its JavaScript API, which 7 does not have.
// Falls back to 6 when 7 is not installed yet (a tree whose node_modules predate it).
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const root = path.join(__dirname, '..')
const native = path.join(root, 'node_modules', 'typescript-native', 'bin', 'tsc')
const tsc = fs.existsSync(native) ? native : require.resolve('typescript/bin/tsc', { paths: [root] })
const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json'), ...process.argv.slice(2)], { stdio: 'inherit' })
process.exit(r.status ?? 1)
