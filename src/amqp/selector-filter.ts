/**
 * The Event Hubs selector filter, written by the client and read by the simulator: one key, one
 * descriptor and one grammar, so a start position the client asks for is the one the simulator serves.
 * Key and descriptor: `apache.org:selector-filter:string` (0x0000468C:0x00000004), as the Event Hubs
 * SDKs send it (@azure/event-hubs `eventPosition.ts`, azure-eventhub pyamqp `_consumer.py`).
 */
import rhea = require('rhea');

export const SELECTOR_KEY = 'apache.org:selector-filter:string';
export const SELECTOR_DESCRIPTOR = 0x468c00000004;

export type StartPosition = { kind: 'latest' } | { kind: 'earliest' } | { kind: 'enqueuedTime'; value: number } | { kind: 'sequenceNumber'; value: number };

/** The selector expression for "after this sequence number", or for a start position. */
export function selectorFor(position: StartPosition | { kind: 'after'; sequenceNumber: number }): string {
  switch (position.kind) {
    case 'after':
      return `amqp.annotation.x-opt-sequence-number > '${position.sequenceNumber}'`;
    case 'sequenceNumber':
      return `amqp.annotation.x-opt-sequence-number >= '${position.value}'`;
    case 'enqueuedTime':
      return `amqp.annotation.x-opt-enqueued-time >= '${position.value}'`;
    case 'earliest':
      return "amqp.annotation.x-opt-offset > '-1'";
    case 'latest':
      return "amqp.annotation.x-opt-offset > '@latest'";
  }
}

/** The source filter map carrying an expression, as a receiver attaches with it. */
export function selectorFilter(expression: string): Record<string, unknown> {
  return { [SELECTOR_KEY]: rhea.types.wrap_described(expression, SELECTOR_DESCRIPTOR) };
}

export type StartFilter =
  | { kind: 'offset'; value: string; inclusive: boolean }
  | { kind: 'sequence'; value: number; inclusive: boolean }
  | { kind: 'time'; value: number; inclusive: boolean };

/** Parses `amqp.annotation.x-opt-offset > '-1'` and its sequence-number and enqueued-time kin. */
export function parseSelector(expression: string): StartFilter | undefined {
  // Values come quoted ('5') from the SDKs and unquoted (5) in the docs' examples.
  const match = /^\s*amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)\s*(>=|>)\s*(?:'([^']*)'|([^'\s]+))\s*$/i.exec(expression);
  if (!match) return undefined;
  const [, field, op, quoted, bare] = match;
  const raw = quoted ?? bare;
  const inclusive = op === '>=';
  switch (field.toLowerCase()) {
    case 'x-opt-offset':
      return { kind: 'offset', value: raw, inclusive };
    case 'x-opt-sequence-number':
      return /^-?\d+$/.test(raw) ? { kind: 'sequence', value: Number(raw), inclusive } : undefined;
    default:
      return /^-?\d+$/.test(raw) ? { kind: 'time', value: Number(raw), inclusive } : undefined;
  }
}

function findString(value: unknown, depth = 0): string | undefined {
  if (typeof value === 'string') return value;
  if (depth < 4 && value !== null && typeof value === 'object' && 'value' in value) {
    return findString((value as { value: unknown }).value, depth + 1);
  }
  return undefined;
}

/** The selector expression in a source's filter map (described or plain, as peers send it), if any. */
export function selectorIn(filter: unknown): string | undefined {
  if (!filter || typeof filter !== 'object') return undefined;
  return findString((filter as Record<string, unknown>)[SELECTOR_KEY]);
}
