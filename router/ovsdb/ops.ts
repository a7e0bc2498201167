/**
 * Typed transaction operations (RFC 7047 §5.2) and small builders for them.
 * Ops are plain wire objects: `client.transact('Open_vSwitch', [select('Bridge', [eq('name', 'x')])])`.
 */
import { namedUuid, type Row, type UuidAtom, type Value } from './values'

export type ConditionFunction = '<' | '<=' | '==' | '!=' | '>=' | '>' | 'includes' | 'excludes'
/** `[column, function, value]` (§5.1). */
export type Condition = [string, ConditionFunction, Value]
export type Mutator = '+=' | '-=' | '*=' | '/=' | '%=' | 'insert' | 'delete'
/** `[column, mutator, value]` (§5.1). */
export type Mutation = [string, Mutator, Value]

export interface InsertOp { op: 'insert'; table: string; row: Row; 'uuid-name'?: string }
export interface SelectOp { op: 'select'; table: string; where: Condition[]; columns?: string[] }
export interface UpdateOp { op: 'update'; table: string; where: Condition[]; row: Row }
export interface MutateOp { op: 'mutate'; table: string; where: Condition[]; mutations: Mutation[] }
export interface DeleteOp { op: 'delete'; table: string; where: Condition[] }
export interface WaitOp {
  op: 'wait'; table: string; where: Condition[]; columns: string[]; until: '==' | '!='; rows: Row[]
  /** Milliseconds; 0 fails at once when the condition does not hold (§5.2.6). */
  timeout?: number
}
export interface CommitOp { op: 'commit'; durable: boolean }
export interface AbortOp { op: 'abort' }
export interface CommentOp { op: 'comment'; comment: string }
export interface AssertOp { op: 'assert'; lock: string }
export type Operation = InsertOp | SelectOp | UpdateOp | MutateOp | DeleteOp | WaitOp | CommitOp | AbortOp | CommentOp | AssertOp

/** One op's result: `uuid` for insert, `rows` for select, `count` for update/mutate/delete. */
export interface OpResult { uuid?: UuidAtom; rows?: Row[]; count?: number }

export const eq = (column: string, value: Value): Condition => [column, '==', value]
export const includes = (column: string, value: Value): Condition => [column, 'includes', value]

export function insert(table: string, row: Row, uuidName?: string): InsertOp {
  if (uuidName !== undefined) namedUuid(uuidName) // validates the name
  return uuidName === undefined ? { op: 'insert', table, row } : { op: 'insert', table, row, 'uuid-name': uuidName }
}
export function select(table: string, where: Condition[], columns?: string[]): SelectOp {
  return columns ? { op: 'select', table, where, columns } : { op: 'select', table, where }
}
export const update = (table: string, where: Condition[], row: Row): UpdateOp => ({ op: 'update', table, where, row })
export const mutate = (table: string, where: Condition[], mutations: Mutation[]): MutateOp => ({ op: 'mutate', table, where, mutations })
/** `delete` is a keyword, hence `del`. */
export const del = (table: string, where: Condition[]): DeleteOp => ({ op: 'delete', table, where })
export function wait(table: string, where: Condition[], columns: string[], until: '==' | '!=', rows: Row[], timeoutMs?: number): WaitOp {
  return timeoutMs === undefined ? { op: 'wait', table, where, columns, until, rows } : { op: 'wait', table, where, columns, until, rows, timeout: timeoutMs }
}
export const comment = (text: string): CommentOp => ({ op: 'comment', comment: text })
export const commit = (durable: boolean): CommitOp => ({ op: 'commit', durable })
