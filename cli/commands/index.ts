/**
 * Every `weave` subcommand, in the order `weave --help` lists them: its name, its one-line
 * summary, and how to load it. A command's module is loaded only when that command runs (or its
 * help is asked for), so `weave version` does not pay for `weave launch`'s or `dns-lookup`'s
 * imports. Add one line per command.
 */
import type { Command } from '../context'

export interface CommandEntry {
  name: string
  summary: string
  load(): Promise<Command>
}

export const COMMANDS: readonly CommandEntry[] = [
  { name: 'launch', summary: 'start the weave router on this host, connecting to PEERs', load: async () => (await import('./launch')).command },
  { name: 'stop', summary: 'stop the weave router on this host', load: async () => (await import('./stop')).command },
  { name: 'status', summary: 'show the router status, or one view of it', load: async () => (await import('./status')).command },
  { name: 'report', summary: 'print everything the router knows, as JSON', load: async () => (await import('./report')).command },
  { name: 'env', summary: 'print the shell line that points docker at the weave proxy', load: async () => (await import('./env')).command },
  { name: 'config', summary: 'print the docker flag that points at the weave proxy (docker $(weave config) ps)', load: async () => (await import('./env')).configCommand },
  { name: 'version', summary: 'print the version of this command and of the running router', load: async () => (await import('./version')).command },
  { name: 'rmpeer', summary: 'take over the IP address ranges of dead peers', load: async () => (await import('./rmpeer')).command },
  { name: 'prime', summary: 'wait until IP address allocation is ready (triggers consensus)', load: async () => (await import('./prime')).command },
  { name: 'attach', summary: 'give a container or namespace weave addresses (ethwe)', load: async () => (await import('./attach')).attachCommand },
  { name: 'detach', summary: 'take weave addresses (all by default) from a container or namespace', load: async () => (await import('./attach')).detachCommand },
  { name: 'ps', summary: 'list attached containers with MAC and addresses', load: async () => (await import('./attach')).psCommand },
  { name: 'expose', summary: 'give the host an address on the weave network (with masquerading)', load: async () => (await import('./attach')).exposeCommand },
  { name: 'hide', summary: 'take back addresses weave expose gave the host (all by default)', load: async () => (await import('./attach')).hideCommand },
  { name: 'reset', summary: 'stop the router and remove everything weave set up on this host', load: async () => (await import('./reset')).command },
  { name: 'connect', summary: 'connect the running router to more peers', load: async () => (await import('./connect')).command },
  { name: 'forget', summary: "remove peers from the running router's targets", load: async () => (await import('./connect')).forgetCommand },
  { name: 'dns-add', summary: 'add weaveDNS records for a container or by hand', load: async () => (await import('./dns')).dnsAddCommand },
  { name: 'dns-remove', summary: 'remove weaveDNS records of a container or added by hand', load: async () => (await import('./dns')).dnsRemoveCommand },
  { name: 'dns-lookup', summary: 'look a name up in weaveDNS', load: async () => (await import('./dns')).dnsLookupCommand },
  { name: 'dns-args', summary: 'print the docker run flags that point a container at weaveDNS', load: async () => (await import('./dns')).dnsArgsCommand },
  { name: 'setup-cni', summary: 'install the weave-net CNI plugin and a 10-weave.conflist', load: async () => (await import('./setup-cni')).command },
]
