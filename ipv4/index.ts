/** IPv4 text and arithmetic shared by every part of weave-ts: see ./address.ts. */
export {
  type Addr, type Cidr, Ipv4Error,
  parseIp, formatIp, parseCidr, formatCidr, mustParseIp, mustParseCidr,
  blockSize, networkOf, isNetworkCidr, lastOf,
} from './address'
