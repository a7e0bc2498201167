import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ConfigError, parseDaemonArgs, launchHelp, FLAGS } from '../../router/config'

test('defaults are Weave\'s', () => {
  const c = parseDaemonArgs([], {})
  assert.is(c.stateDir, '/var/lib/weave')
  assert.is(c.runDir, '/run/weave')
  assert.equal(c.httpAddr, { host: '127.0.0.1', port: 6784 })
  assert.is(c.meshPort, 6783)
  assert.is(c.ipallocRange, '10.32.0.0/12')
  assert.is(c.mtu, 1376)
  assert.is(c.password, undefined)
  assert.is(c.proxy, false, 'no docker socket, no proxy')
  assert.ok(Object.isFrozen(c))
})

test('peers are positional, flags take values in both spellings', () => {
  const c = parseDaemonArgs(['10.0.0.1', '--password', 's3cret', '--conn-limit=5', 'host-b:7000', '--no-discovery'], {})
  assert.equal([...c.peers], ['10.0.0.1', 'host-b:7000'])
  assert.is(c.password, 's3cret')
  assert.is(c.connLimit, 5)
  assert.is(c.noDiscovery, true)
})

test('environment fills in, flags win over it', () => {
  const env = { WEAVE_STATE_DIR: '/s', WEAVE_RUN_DIR: '/r', WEAVE_PASSWORD: 'pw', WEAVE_MTU: '1400' }
  const c = parseDaemonArgs(['--run-dir', '/flag'], env)
  assert.is(c.stateDir, '/s')
  assert.is(c.runDir, '/flag')
  assert.is(c.password, 'pw')
  assert.is(c.mtu, 1400)
})

test('proxy defaults on only when the docker socket exists; --no-proxy wins', () => {
  const exists = () => true
  assert.is(parseDaemonArgs([], {}, { dockerSocketExists: exists }).proxy, true)
  assert.is(parseDaemonArgs(['--no-proxy'], {}, { dockerSocketExists: exists }).proxy, false)
  assert.is(parseDaemonArgs([], { DOCKER_HOST: 'tcp://1.2.3.4:2375' }, { dockerSocketExists: exists }).proxy, false)
})

test('bad input is a ConfigError that names the culprit', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--bogus'], /unknown flag --bogus/],
    [['--conn-limit', 'many'], /connLimit: "many"/],
    [['--port'], /--port needs a value/],
    [['--no-discovery=yes'], /takes no value/],
    [['--http-addr', 'nope'], /not host:port/],
    [['--log-level', 'loud'], /log level "loud"/],
    [['a peer'], /"a peer" is not a peer address/],
    [['--mtu', '70000'], /mtu/],
    [['--trusted-subnets', '10.0.0.0/8,10.1'], /--trusted-subnets: "10\.1" is not a subnet/],
  ]
  for (const [argv, re] of cases) {
    try {
      parseDaemonArgs(argv, {})
      assert.unreachable(`accepted ${argv.join(' ')}`)
    } catch (err) {
      assert.instance(err, ConfigError)
      assert.match((err as Error).message, re)
    }
  }
})

test('--trusted-subnets: Weave\'s comma list, kept as network CIDRs; none by default', () => {
  assert.equal(parseDaemonArgs(['--trusted-subnets', '192.168.48.9/24,10.0.0.0/8'], {}).trustedSubnets, ['192.168.48.0/24', '10.0.0.0/8'])
  assert.equal(parseDaemonArgs([], {}).trustedSubnets, [])
})

test('proxy TLS: --tlsverify implies TLS; files default to $DOCKER_CERT_PATH as Docker\'s', () => {
  assert.is(parseDaemonArgs([], {}).proxyTls, undefined)
  assert.equal(parseDaemonArgs(['--tlsverify'], { DOCKER_CERT_PATH: '/certs' }).proxyTls, { verify: true, caCert: '/certs/ca.pem', cert: '/certs/cert.pem', key: '/certs/key.pem' })
  assert.equal(parseDaemonArgs(['--tls', '--tlscert', '/a/c.pem', '--tlskey=/a/k.pem'], { DOCKER_CERT_PATH: '/certs' }).proxyTls,
    { verify: false, caCert: '/certs/ca.pem', cert: '/a/c.pem', key: '/a/k.pem' })
  assert.is(parseDaemonArgs(['--tlscert', '/a/c.pem'], {}).proxyTls, undefined, 'files alone do not turn TLS on (as Docker)')
})

test('--http-addr off disables the TCP API', () => {
  assert.is(parseDaemonArgs(['--http-addr', 'off'], {}).httpAddr, undefined)
})

test('launch help lists every flag', () => {
  const help = launchHelp()
  for (const f of FLAGS) assert.ok(help.includes(f.flag), f.flag)
})

test.run()
