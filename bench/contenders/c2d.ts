/** Cloud-to-device: the service side sending 1 KB messages to many devices in turn. */
import rhea = require('rhea');
import type { Sender } from 'rhea-promise';
import { sendingFlow, startNodeRed, type EmbeddedNodeRed } from '../node-red';
import type { BenchParams, HubInfo } from '../protocol';
import { openRaw, type RawConnection } from '../raw';
import { payloadOf, runCredit, runWindowed, type Contender } from '../runners';
import { FlowDriver } from './flow-driver';

const to = (deviceId: string): string => `/devices/${encodeURIComponent(deviceId)}/messages/devicebound`;

/** A bare rhea-promise sender on `/messages/devicebound` filling its credit. */
export function rawSender(hub: HubInfo, params: BenchParams): Contender {
  let raw: RawConnection | undefined;
  let sender: Sender | undefined;
  const body = rhea.message.data_section(payloadOf(params.size));
  const targets = params.c2dDevices.map(to);
  return {
    async setup() {
      raw = await openRaw(hub, hub.serviceConnectionString);
      sender = await raw.connection.createSender({ target: { address: '/messages/devicebound' } });
      return {};
    },
    round: () => runCredit([sender as Sender], params.durationMs, (i) => ({ message_id: `m${i}`, to: targets[i % targets.length], body })),
    async close() {
      await sender?.close().catch(() => undefined);
      await raw?.close();
    },
  };
}

/** c2d-send in a running Node-RED flow, msg.deviceId naming each target. */
export function c2dSendNode(hub: HubInfo, params: BenchParams): Contender {
  let red: EmbeddedNodeRed | undefined;
  let driver: FlowDriver | undefined;
  const payload = payloadOf(params.size);
  const devices = params.c2dDevices;
  return {
    // The warm-up round pays for connecting and attaching: c2d-send attaches on its first msg.
    async setup() {
      red = await startNodeRed();
      await red.deploy(
        sendingFlow(hub.certFile, { id: 'c2d', type: 'iothub-c2d-send', deviceId: '', deviceIdType: 'str', ack: 'none', maxPending: params.window }),
        { hub: { connectionString: hub.serviceConnectionString } },
      );
      driver = new FlowDriver(red);
      return {};
    },
    round: () => runWindowed(params.durationMs, params.window, (i) => (driver as FlowDriver).send(i, { payload, deviceId: devices[i % devices.length] })),
    async close() {
      await red?.stop();
    },
  };
}
