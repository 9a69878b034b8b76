/**
 * A worker process runs one contender: set up when told, one round per request, then report its
 * peak RSS and exit. Started by the runner with an IPC channel; prints nothing to stdout.
 */
import { CONTENDERS } from './contenders';
import { peakRssKb } from './contenders/common';
import type { FromWorker, ToWorker } from './protocol';
import type { Contender } from './runners';

let contender: Contender | undefined;
let notes: Record<string, number> = {};

function reply(message: FromWorker): void {
  process.send?.(message);
}

function failed(err: unknown): void {
  reply({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
}

async function handle(message: ToWorker): Promise<void> {
  switch (message.type) {
    case 'setup': {
      const load = CONTENDERS[message.contender];
      if (!load) throw new Error(`no contender named ${message.contender}`);
      contender = (await load())(message.hub, message.params);
      notes = await contender.setup();
      reply({ type: 'ready', notes });
      return;
    }
    case 'round': {
      if (!contender) throw new Error('round before setup');
      const cpu = process.cpuUsage();
      const result = await contender.round(message.index);
      const used = process.cpuUsage(cpu);
      reply({ type: 'result', messages: result.messages, ms: result.ms, cpuUs: result.cpuUs ?? used.user + used.system });
      return;
    }
    case 'finish': {
      const late = contender?.notes?.() ?? {};
      const maxRssKb = peakRssKb();
      await contender?.close();
      reply({ type: 'finished', maxRssKb, notes: { ...notes, ...late } });
      // Some SDK clients keep timers after close; the runner has what it needs.
      setTimeout(() => process.exit(0), 100);
      return;
    }
  }
}

process.on('message', (message: ToWorker) => {
  handle(message).catch(failed);
});
// Anything unhandled is this contender's failure, reported rather than lost.
process.on('unhandledRejection', failed);
process.on('uncaughtException', failed);
process.on('disconnect', () => process.exit(0));
// Killed by the runner after a failure: exit properly so temporary files go.
process.on('SIGTERM', () => process.exit(1));
