/**
 * Drives a deployed flow: msgs enter at the inject node `src` and are counted at the sink `sink`;
 * a catch node routes any error to the sink `errors`. Each msg carries a sequence number so its
 * arrival (or its error) settles the promise its send returned.
 */
import type { EmbeddedNodeRed, FlowNode } from '../node-red';

export class FlowDriver {
  private readonly waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private readonly source: FlowNode;

  constructor(red: EmbeddedNodeRed) {
    this.source = red.node('src');
    red.node('sink').on('input', (msg) => this.settle(msg));
    red.node('errors').on('input', (msg) => {
      const error = msg.error as { message?: string; code?: string } | undefined;
      this.settle(msg, new Error(`${error?.code ?? 'Error'}: ${error?.message ?? 'the flow reported an error'}`));
    });
  }

  send(seq: number, msg: Record<string, unknown>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      this.source.send({ ...msg, benchSeq: seq });
    });
  }

  private settle(msg: Record<string, unknown>, error?: Error): void {
    const seq = msg.benchSeq;
    if (typeof seq !== 'number') return;
    const entry = this.waiting.get(seq);
    if (!entry) return;
    this.waiting.delete(seq);
    if (error) entry.reject(error);
    else entry.resolve();
  }
}
