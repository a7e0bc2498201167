#!/usr/bin/env bash
# The project's test command (README: `npm test`). Installs the Debian packages the tests need
# when they are missing, builds, then runs every test file under dist/test in its own process.
# Usage: npm test [-- PATTERN...]   (patterns are matched against test file paths)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh
npm run --silent build
exec node scripts/run-tests.js "$@"
