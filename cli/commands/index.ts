/** Every `weave` subcommand, in the order `weave --help` lists them. Add one line per command. */
import type { Command } from '../context'
import { command as launch } from './launch'
import { command as stop } from './stop'
import { command as status } from './status'
import { command as report } from './report'
import { command as version } from './version'
import { command as env, configCommand as config } from './env'
import { command as rmpeer } from './rmpeer'
import { command as prime } from './prime'
import { attachCommand, detachCommand, psCommand, exposeCommand, hideCommand } from './attach'
import { command as reset } from './reset'
import { command as connect, forgetCommand as forget } from './connect'
import { dnsAddCommand, dnsRemoveCommand, dnsLookupCommand, dnsArgsCommand } from './dns'
import { command as setupCni } from './setup-cni'

export const COMMANDS: readonly Command[] = [launch, stop, status, report, env, config, version, rmpeer, prime,
  attachCommand, detachCommand, psCommand, exposeCommand, hideCommand, reset, connect, forget,
  dnsAddCommand, dnsRemoveCommand, dnsLookupCommand, dnsArgsCommand, setupCni]
