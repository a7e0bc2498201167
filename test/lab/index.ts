/**
 * The multi-host test lab: the only door other tests and benchmarks import.
 *
 * ```ts
 * import { withLab } from '../lab'
 * await withLab({ hosts: 3, docker: true, ovs: ['h1', 'h2'] }, async (lab) => {
 *   const [h1, h2] = lab.hosts
 *   await h1.exec(['busybox', 'ping', '-c1', h2.underlayIp])       // throws on failure
 *   await h1.docker(['run', '-d', '--name', 'c1', 'busybox', 'sleep', '600'])
 *   await h1.launchWeave([h2.underlayIp])                           // ./weave launch in h1
 *   const st = await h1.api('/status')                               // over ${WEAVE_RUN_DIR}/api.sock
 *   await lab.partition(['h1'], ['h2']); await lab.heal()
 * })
 * ```
 *
 * - `createLab(opts)` → `Lab`; `withLab(opts, fn)` tears down whatever happens.
 * - `lab.hosts[i]`: `name` (`h1`), `ns`, `underlayIp` (192.168.250.i), `underlayDev` (`eth0`, or
 *   `br-phy` with OVS), `exec(argv, {allowFail, env, input, timeoutMs})` → `{code, stdout, stderr}`
 *   (throws ExecError unless allowFail), `sh(script)`, `spawn(argv)` (killed at teardown),
 *   `ping(ip)` → boolean, `docker(args)`, `dockerHost`, `ovsVsctl(args)`, `ovsAppctl(args)`,
 *   `ovsOfctl(args)`, `ovsSocket`, `weave(args)`, `launchWeave(args, env)`, `weaveEnv()`
 *   (WEAVE_STATE_DIR, WEAVE_RUN_DIR, DOCKER_HOST, WEAVE_OVSDB, OVS_RUNDIR), `api(path, {method, body})`,
 *   `weaverLog(lines)` (tail of the host's weaver.log, for failure messages), `containerPid(name)`.
 * - Faults: `lab.linkDown(h)`, `lab.linkUp(h)`, `lab.netem(h, {delayMs, lossPct})` (no sch_netem on
 *   this kernel: loss works through nftables, delay throws FaultUnavailable), `lab.partition(A, B)`,
 *   `lab.heal()`, `lab.udpFault(a, b, {ports, maxIpBytes})` (UDP only, TCP stays open; silent
 *   drops of given ports or of datagrams above a size) and `lab.clearUdp(a, b)`.
 * - `lab.teardown()` → report with the pids it killed; `sweep()` clears labs of dead processes.
 * - Baseline: `measureUnderlay(a, b)`, `measureKernelVxlan(a, b)` (Gbit/s, iperf3 a → b),
 *   `setupKernelVxlan(a, b)`, `iperf(server, client, ip)`. Take the baseline on hosts without OVS
 *   (with OVS the underlay itself runs through the slow userspace br-phy).
 * - `ovsDatapathType()`: `system` (kernel datapath, eth0 stays the underlay) when the openvswitch
 *   module is loaded (the stock-kernel VM, test/vm), else `netdev` (userspace, via br-phy).
 * - `labUnavailableReason({docker, ovs})`: a test skips with this reason when it is set.
 * - Entering a host: `exec`/`spawn`/`weave` use `ip netns exec` (the command sees the host's own
 *   /sys/class/net); pass `{enter: 'nsenter'}` for `nsenter --net` (dockerd and OVS need it).
 * - The lab waits until every host reaches the next over the underlay before createLab returns.
 * - No sch_netem on this kernel: `netem` delay throws FaultUnavailable (loss works via nft).
 * - CNI: `setupCni(host)` (`weave setup-cni` into the host's dirs), `preparePodDir(host)` then
 *   `createPodNetns(host, name)` (before launch; see cni.ts), `runPlugin(host, plugin, {command, ...})`;
 *   podman with the CNI backend: `startPodman(host, cni, await buildBusyboxTar(lab.dir))`.
 */
export { createLab, withLab, labUnavailableReason, Lab, type LabOptions, type TeardownReport } from './lab'
export { LabHost, REPO_ROOT, type ApiResponse } from './host'
export { ExecError, delay, waitFor, type ExecOptions, type ExecResult } from './exec'
export { FaultUnavailable, type NetemOptions } from './faults'
export { restartDockerd } from './docker'
export { sweep, destroyLab, presentLabs, type SweepOptions, type DestroyReport } from './sweep'
export { iperf, type IperfOptions, type IperfResult } from './iperf'
export { ovsDatapathType } from './ovs'
export { offloads, tcpSizesOn, type TcpSizes } from './gso-capture'
export { setupKernelVxlan, measureKernelVxlan, measureKernelVxlanContainers, measureUnderlay, type KernelVxlan, type KernelVxlanOptions } from './kernel-vxlan'
export { setupCni, preparePodDir, createPodNetns, removePodNetns, runPlugin, addressesIn, type HostCni, type PluginRun } from './cni'
export { startPodman, podmanId, podmanUnavailableReason, BUSYBOX, type HostPodman } from './podman'
export { buildBusyboxTar } from './docker'
