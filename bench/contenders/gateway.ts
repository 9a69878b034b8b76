/**
 * Gateway scale: many devices behind one connection, each with its own CBS token and D2C link,
 * through the package's client core and through device-out in a flow. Memory is read after a forced GC (the worker runs with
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
import { sendingFlow, startNodeRed, type EmbeddedNodeRed } from '../node-red';
import { peakRssKb, settledMemory, waitForState } from './common';
import { FlowDriver } from './flow-driver';

/** What setup reports: the time to attach every device and the memory they took (after GC both times). */
function attachNotes(devices: number, authMs: number, before: { rss: number; heap: number }, after: { rss: number; heap: number }): Record<string, number> {
  const extra = after.rss - before.rss;
  return {
    devices,
    authMs,
    idleExtraRssMb: extra / 2 ** 20,
    idleRssPerDeviceKb: extra / 1024 / devices,
    heapPerDeviceKb: (after.heap - before.heap) / 1024 / devices,
    baselineRssMb: before.rss / 2 ** 20,
  };
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
      return attachNotes(devices.length, performance.now() - start, before, await settledMemory());
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

/**
 * device-out in a Node-RED flow with a gateway connection: msg.deviceId picks the device, and each
 * device's link is made on its first msg. Setup sends one msg per device and waits for all of them:
 * the time that takes is when every device is authenticated, attached and has delivered.
 */
export function deviceOutGateway(hub: HubInfo, params: BenchParams): Contender {
  let red: EmbeddedNodeRed | undefined;
  let driver: FlowDriver | undefined;
  let baseline = 0;
  const payload = payloadOf(params.size);
  const devices = params.gatewayDevices;
  return {
    async setup() {
      red = await startNodeRed();
      await red.deploy(
        sendingFlow(hub.certFile, { id: 'dout', type: 'iothub-device-out', deviceId: '', deviceIdType: 'str', maxPending: Math.max(1000, devices.length * 2) }),
        { hub: { connectionString: hub.gatewayConnectionString } },
      );
      const flow = new FlowDriver(red);
      driver = flow;
      // One msg first, so the shared connection is open before the baseline is read.
      await within(flow.send(-1, { payload, deviceId: devices[0] }), 60_000, 'the first message');
      const before = await settledMemory();
      baseline = before.rss;
      const start = performance.now();
      await within(
        Promise.all(devices.map((deviceId, i) => flow.send(-2 - i, { payload, deviceId }))),
        300_000,
        `a first message from each of ${devices.length} devices`,
      );
      return attachNotes(devices.length, performance.now() - start, before, await settledMemory());
    },
    round: () => runWindowed(params.durationMs, devices.length, (i) => (driver as FlowDriver).send(i, { payload, deviceId: devices[i % devices.length] })),
    notes() {
      return { peakExtraRssMb: (peakRssKb() * 1024 - baseline) / 2 ** 20 };
    },
    async close() {
      await red?.stop();
    },
  };
}
