/**
 * Gateway scale: many devices behind one connection, each with its own CBS token and D2C link, all
 * through the package's client core. Memory is read after a forced GC (the worker runs with
 * --expose-gc) before and after the devices attach. RSS also counts what V8 keeps after the burst of
 * 1,000 attaches (its young generation grows and stays), so the live heap per device is given too.
 */
import { readFileSync } from 'node:fs';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubConnection } from '../../src/iothub/hub-connection';
import { HubSender } from '../../src/iothub/links';
import { toAmqpMessage } from '../../src/iothub/message';
import type { BenchParams, HubInfo } from '../protocol';
import { payloadOf, runWindowed, within, type Contender } from '../runners';
import { peakRssKb, waitForState } from './common';

/** RSS and live heap after a full GC, bytes; the lowest of a few samples, so a stray allocation does not count. */
async function settledMemory(): Promise<{ rss: number; heap: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  let rss = Infinity;
  let heap = Infinity;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 50));
    rss = Math.min(rss, process.memoryUsage.rss());
    heap = Math.min(heap, process.memoryUsage().heapUsed);
  }
  return { rss, heap };
}

export function coreGateway(hub: HubInfo, params: BenchParams): Contender {
  let connection: HubConnection | undefined;
  let senders: HubSender[] = [];
  let baseline = 0;
  const payload = payloadOf(params.size);
  const devices = params.gatewayDevices;
  return {
    async setup() {
      connection = new HubConnection(parseConnectionString(hub.gatewayConnectionString, { gatewayPolicy: true }), {
        transport: 'amqps',
        ca: readFileSync(hub.certFile),
      });
      await waitForState(connection, 'open');
      const before = await settledMemory();
      baseline = before.rss;
      const start = performance.now();
      const hubConnection = connection;
      let attached = 0;
      const all = new Promise<void>((resolve) => {
        senders = devices.map((deviceId) => {
          const sender = new HubSender(hubConnection, `/devices/${deviceId}/messages/events`, { deviceId }, { maxPending: 100 });
          sender.once('attached', () => {
            attached += 1;
            if (attached === devices.length) resolve();
          });
          return sender;
        });
      });
      await within(all, 300_000, `attaching ${devices.length} devices`);
      const authMs = performance.now() - start;
      const after = await settledMemory();
      const extra = after.rss - baseline;
      return {
        devices: devices.length,
        authMs,
        idleExtraRssMb: extra / 2 ** 20,
        idleRssPerDeviceKb: extra / 1024 / devices.length,
        heapPerDeviceKb: (after.heap - before.heap) / 1024 / devices.length,
        baselineRssMb: baseline / 2 ** 20,
      };
    },
    // One message in flight per device on average: every device sends, in turn.
    round: () =>
      runWindowed(params.durationMs, devices.length, (i) => {
        const out = toAmqpMessage({ payload }, 'd2c');
        return senders[i % senders.length].send(out.message);
      }),
    notes() {
      const peakKb = peakRssKb();
      return { peakExtraRssMb: (peakKb * 1024 - baseline) / 2 ** 20 };
    },
    async close() {
      await Promise.all(senders.map((s) => s.close()));
      await connection?.close();
    },
  };
}
