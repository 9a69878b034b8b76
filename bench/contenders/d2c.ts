/** Device-to-cloud: one device sending 1 KB telemetry as fast as each client lets it. */
import { readFileSync } from 'node:fs';
import rhea = require('rhea');
import type { Sender } from 'rhea-promise';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubConnection } from '../../src/iothub/hub-connection';
import { HubSender } from '../../src/iothub/links';
import { toAmqpMessage } from '../../src/iothub/message';
import type { BenchParams, HubInfo } from '../protocol';
import { openRaw, type RawConnection } from '../raw';
import { payloadOf, runCredit, runWindowed, type Contender } from '../runners';
import { sendingFlow, startNodeRed, type EmbeddedNodeRed } from '../node-red';
import { waitForState } from './common';
import { D2C_DEVICES } from './devices';
import { FlowDriver } from './flow-driver';

/** The wire's pace: a bare rhea-promise sender filling its credit. */
export function rawSender(hub: HubInfo, params: BenchParams): Contender {
  const deviceId = D2C_DEVICES.raw;
  let raw: RawConnection | undefined;
  let sender: Sender | undefined;
  const body = rhea.message.data_section(payloadOf(params.size));
  return {
    async setup() {
      raw = await openRaw(hub, hub.devices[deviceId], { deviceId });
      sender = await raw.connection.createSender({ target: { address: `/devices/${deviceId}/messages/events` } });
      return {};
    },
    round: () => runCredit([sender as Sender], params.durationMs, (i) => ({ message_id: `m${i}`, body })),
    async close() {
      await sender?.close().catch(() => undefined);
      await raw?.close();
    },
  };
}

/** The package's client core as device-out drives it: msg mapping plus a pipelined HubSender. */
export function coreSender(hub: HubInfo, params: BenchParams): Contender {
  const deviceId = D2C_DEVICES.core;
  let connection: HubConnection | undefined;
  let sender: HubSender | undefined;
  const payload = payloadOf(params.size);
  return {
    async setup() {
      connection = new HubConnection(parseConnectionString(hub.devices[deviceId]), { transport: 'amqps', ca: readFileSync(hub.certFile) });
      sender = new HubSender(connection, `/devices/${deviceId}/messages/events`, { deviceId }, { maxPending: params.window });
      await waitForState(connection, 'open');
      return {};
    },
    round: () =>
      runWindowed(params.durationMs, params.window, () => {
        const out = toAmqpMessage({ payload }, 'd2c');
        return (sender as HubSender).send(out.message);
      }),
    async close() {
      await sender?.close();
      await connection?.close();
    },
  };
}

/** device-out in a running Node-RED flow, speaking as one device (a device connection string). */
export function deviceOutNode(hub: HubInfo, params: BenchParams): Contender {
  const deviceId = D2C_DEVICES.node;
  let red: EmbeddedNodeRed | undefined;
  let driver: FlowDriver | undefined;
  const payload = payloadOf(params.size);
  return {
    // The warm-up round pays for connecting and attaching.
    async setup() {
      red = await startNodeRed();
      await red.deploy(sendingFlow(hub.certFile, { id: 'dout', type: 'iothub-device-out', deviceId: '', deviceIdType: 'str', maxPending: params.window }), {
        hub: { connectionString: hub.devices[deviceId] },
      });
      driver = new FlowDriver(red);
      return {};
    },
    round: () => runWindowed(params.durationMs, params.window, (i) => (driver as FlowDriver).send(i, { payload })),
    async close() {
      await red?.stop();
    },
  };
}
