/** A failure with an HTTP-ish status, for the API layer. */
export class IpamError extends Error {
  constructor(readonly status: number, message: string, readonly code = 'ipam') {
    super(message)
  }
}
