/** Cloud-to-device with the official service SDK (its own module: only its worker loads the SDK). */
import { Client as ServiceClient } from 'azure-iothub';
import type { BenchParams, HubInfo } from '../protocol';
import { payloadOf, runWindowed, type Contender } from '../runners';

/** azure-iothub Client.send, one at a time or `window` in flight. */
export function sdkService(window: 'one' | 'many') {
  return (hub: HubInfo, params: BenchParams): Contender => {
    let client: ServiceClient | undefined;
    const payload = payloadOf(params.size);
    const devices = params.c2dDevices;
    return {
      async setup() {
        // The service SDK has no CA option: the runner starts workers with NODE_EXTRA_CA_CERTS.
        client = ServiceClient.fromConnectionString(hub.serviceConnectionString);
        await client.open();
        return {};
      },
      round: () =>
        runWindowed(params.durationMs, window === 'one' ? 1 : params.window, (i) => (client as ServiceClient).send(devices[i % devices.length], payload)),
      async close() {
        await client?.close().catch(() => undefined);
      },
    };
  };
}
