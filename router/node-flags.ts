/**
 * Node/V8 flags for the router's own process, given by whatever starts it: `weave launch` (and
 * its supervisor), the Kubernetes start-up (k8s/main.ts) and the systemd unit
 * (scripts/systemd/weave.service, checked by test/unit/systemd-unit.test.ts).
 *
 * `--optimize-for-size`: the router is a long-lived daemon whose JavaScript allocates in bursts
 * (gossip, API calls, DNS churn). By default V8 grows its young generation to 16 MiB semi-spaces
 * and the old generation to a multiple of the live heap on the first burst, and keeps that memory:
 * 10,000 DNS register/remove events from a cold start grew the router's RSS by 26 MiB, almost all
 * of it heap reserve, not live data (heap used after a full GC: +3 MiB, the capped tombstones).
 * With this flag V8 keeps 1–2 MiB semi-spaces and grows the old generation less: the same run grows
 * RSS by 5 MiB, and the sleeve's CPU per Gbit is unchanged (its hot path is native batches and
 * TurboFan still optimises the JavaScript). Measured in `npm run bench -- dns` and `sleeve`.
 * The price is start-up: V8 optimises less eagerly. `npm run bench -- mesh-procs 20`, quiet, one
 * run each: without the flag 20 routers started together know each other after 12.8 s (19.5 CPU
 * s), connect_s 0.57, RSS after 10 s of iperf3 104 MiB; with it 16.0 s (25.3 CPU s), 0.74 s and
 * 80 MiB. A router starts once and runs for months on hosts where memory is what runs out.
 * It is a V8 option that NODE_OPTIONS refuses, so it must be on the command line.
 */
export const ROUTER_NODE_FLAGS: readonly string[] = ['--optimize-for-size']
