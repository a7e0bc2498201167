/** The addon reports per-message errors as errno numbers: callers see their names. */
import { constants as osConstants } from 'node:os'

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]))

/** "EMSGSIZE" for 90; "E<n>" for a number this platform does not name. */
export const errnoName = (n: number): string => errnoNames.get(n) ?? `E${n}`
