/**
 * OVSDB (RFC 7047) for the fastdp data plane: a small JSON-RPC client and the `datapath` bridge
 * setup done through it. The only door into router/ovsdb.
 *
 * ```ts
 * const db = await connectOvsdb('unix:/run/openvswitch/db.sock')
 * await ensureDatapath(db, { bridge: 'datapath', datapathType: 'netdev', ports: ['vethwe-datapath'] })
 * await waitApplied(db, clock)                       // ovs-vswitchd has caught up
 * const info = await datapathInfo(db, 'datapath')   // for weave report
 * const why = datapathProblems(info!)               // [] when every port is attached
 * db.close()
 * ```
 */
export { OvsdbError, JsonRpcFramingError, type FramingReason } from './errors'
export { JsonStreamParser, JsonRpcSession, classifyMessage, type JsonRpcSessionOptions, type ParseResult, type RpcMessage, type JsonRpcTransport } from './jsonrpc'
export {
  connectOvsdb, createOvsdbClient, parseOvsdbTarget, checkTransactResult,
  type OvsdbClient, type OvsdbConnection, type OvsdbClientOptions, type Monitor, type MonitorRequest, type TableUpdates, type RowUpdate,
} from './client'
export * from './ops'
export * from './values'
export {
  ensureDatapath, removeDatapath, datapathInfo, datapathProblems, waitApplied,
  type DatapathOptions, type DatapathInfo, type DatapathPort, type EnsureResult,
} from './datapath'
