/**
 * Request and response over a pair of links, as IoT Hub's `$cbs` and the Event Hubs `$management` node
 * speak it (AMQP Claims-Based Security draft; Azure docs "AMQP 1.0 in Azure Service Bus: request-response
 * operations"): the request carries a message id and a reply-to address, the response names the request
 * in its correlation id and answers in its application properties `status-code` (an int: azure-uamqp-c's
 * amqp_management.c refuses any other type) and `status-description`. The client waits on responses
 * here; the simulator writes them here.
 */
import rhea = require('rhea');
import { idToString } from './message-rules';

export const STATUS_CODE = 'status-code';
export const STATUS_DESCRIPTION = 'status-description';

export interface Response {
  status: number;
  /** The status description, or `status <n>` when the peer sent none. */
  description: string;
  message: rhea.Message;
}

/** The response to `request`: correlated, addressed to its reply-to, with status and body. */
export function responseFor(request: rhea.Message, status: number, description: string, body?: unknown): rhea.Message {
  const response = {
    correlation_id: request.message_id,
    application_properties: { [STATUS_CODE]: rhea.types.wrap_int(status), [STATUS_DESCRIPTION]: description },
    body: body ?? null,
  } as rhea.Message;
  if (typeof request.reply_to === 'string') response.to = request.reply_to;
  return response;
}

/** Reads a response's status; a missing or unreadable code reads as NaN. */
export function readResponse(message: rhea.Message): Response {
  const props = (message.application_properties ?? {}) as Record<string, unknown>;
  const status = Number(props[STATUS_CODE]);
  const description =
    typeof props[STATUS_DESCRIPTION] === 'string' && props[STATUS_DESCRIPTION] ? (props[STATUS_DESCRIPTION] as string) : `status ${String(props[STATUS_CODE])}`;
  return { status, description, message };
}

interface Waiting {
  resolve: (response: Response) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Requests sent and not answered yet, by message id. Every request ends exactly once: answered, timed
 * out, or failed with its links; nothing is left to settle later with no one listening.
 */
export class PendingRequests {
  private readonly waiting = new Map<string, Waiting>();

  constructor(
    private readonly timeoutMs: number,
    /** The error for a request that was not answered in time. */
    private readonly timedOut: () => Error,
  ) {}

  get size(): number {
    return this.waiting.size;
  }

  /** Waits for the response to the request with message id `id` (send it after calling this). */
  expect(id: string): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(this.timedOut());
      }, this.timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
    });
  }

  /** Hands a response to the request it names; false when none waits for it (late or foreign). */
  answer(message: rhea.Message): boolean {
    const id = idToString(message.correlation_id);
    const waiting = id === undefined ? undefined : this.waiting.get(id);
    if (!waiting || id === undefined) return false;
    this.waiting.delete(id);
    clearTimeout(waiting.timer);
    waiting.resolve(readResponse(message));
    return true;
  }

  /** Fails one request (it could not be sent). */
  fail(id: string, err: Error): void {
    const waiting = this.waiting.get(id);
    if (!waiting) return;
    this.waiting.delete(id);
    clearTimeout(waiting.timer);
    waiting.reject(err);
  }

  /** Fails every request still waiting (the links went). */
  failAll(err: Error): void {
    for (const id of [...this.waiting.keys()]) this.fail(id, err);
  }
}
