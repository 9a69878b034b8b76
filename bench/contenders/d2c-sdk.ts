/** Device-to-cloud with the official device SDK (its own module: only its worker loads the SDK). */
import { readFileSync } from 'node:fs';
import { Client as DeviceClient, Message as SdkMessage } from 'azure-iot-device';
import { Amqp as DeviceAmqp } from 'azure-iot-device-amqp';
import type { BenchParams, HubInfo } from '../protocol';
import { payloadOf, runWindowed, type Contender } from '../runners';
import { D2C_DEVICES } from './devices';

/** azure-iot-device over AMQP, `window` sendEvent calls in flight (1 = await each). */
export function sdkDevice(window: 'one' | 'many') {
  return (hub: HubInfo, params: BenchParams): Contender => {
    const deviceId = window === 'one' ? D2C_DEVICES.sdkAwait : D2C_DEVICES.sdkConcurrent;
    let client: DeviceClient | undefined;
    const payload = payloadOf(params.size);
    return {
      async setup() {
        client = DeviceClient.fromConnectionString(hub.devices[deviceId], DeviceAmqp);
        client.on('error', () => undefined);
        await client.setOptions({ ca: readFileSync(hub.certFile, 'utf8') });
        await client.open();
        return {};
      },
      round: () => runWindowed(params.durationMs, window === 'one' ? 1 : params.window, () => (client as DeviceClient).sendEvent(new SdkMessage(payload))),
      async close() {
        await client?.close().catch(() => undefined);
      },
    };
  };
}
