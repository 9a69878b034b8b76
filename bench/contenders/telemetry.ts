/**
 * Reading telemetry: every round drains the pre-filled built-in endpoint from its start, all
 * partitions at once. A round's time runs from the first event to the last.
 */
import rhea = require('rhea');
import type { EventContext, Receiver } from 'rhea-promise';
import { parseConnectionString, type EventHubIdentity } from '../../src/iothub/connection-string';
import { benchFrame, connectionNode, sink, startNodeRed, type EmbeddedNodeRed } from '../node-red';
import type { BenchParams, HubInfo } from '../protocol';
import { openRaw, type RawConnection } from '../raw';
import { ArrivalClock, ROUND_LIMIT_MS, within, type Contender } from '../runners';

const SELECTOR_KEY = 'apache.org:selector-filter:string';
const SELECTOR_DESCRIPTOR = 0x468c00000004;

/** One bare rhea-promise receiver per partition on the Event Hubs endpoint, credit = prefetch. */
export function rawReceivers(hub: HubInfo, params: BenchParams): Contender {
  let raw: RawConnection | undefined;
  let partitions: string[] = [];
  const identity = parseConnectionString(hub.eventHubConnectionString) as EventHubIdentity;
  return {
    async setup() {
      raw = await openRaw(hub, hub.eventHubConnectionString, {}, identity);
      partitions = Array.from({ length: 4 }, (_, i) => String(i));
      return {};
    },
    async round() {
      const connection = (raw as RawConnection).connection;
      const clock = new ArrivalClock(params.messages);
      const receivers: Receiver[] = await Promise.all(
        partitions.map((p) =>
          connection.createReceiver({
            source: {
              address: `${identity.entityPath}/ConsumerGroups/$Default/Partitions/${p}`,
              filter: { [SELECTOR_KEY]: rhea.types.wrap_described("amqp.annotation.x-opt-offset > '-1'", SELECTOR_DESCRIPTOR) },
            },
            // Pre-settled, as telemetry-in reads: the baseline gets the cheapest wire there is.
            snd_settle_mode: 1,
            credit_window: params.prefetch,
            autoaccept: true,
            onMessage: (_ctx: EventContext) => clock.arrived(),
            onError: () => undefined,
          }),
        ),
      );
      try {
        return await within(clock.done, ROUND_LIMIT_MS, 'draining the partitions');
      } finally {
        await Promise.all(receivers.map((r) => r.close().catch(() => undefined)));
      }
    },
    async close() {
      await raw?.close();
    },
  };
}

/** telemetry-in in a running Node-RED flow, redeployed each round to read from the earliest event. */
export function telemetryInNode(hub: HubInfo, params: BenchParams): Contender {
  let red: EmbeddedNodeRed | undefined;
  const frame = (): object[] => [...benchFrame(), connectionNode('hub', hub.certFile)];
  return {
    async setup() {
      red = await startNodeRed();
      return {};
    },
    async round() {
      const runtime = red as EmbeddedNodeRed;
      await runtime.deploy(
        [
          ...frame(),
          {
            id: 'tin',
            type: 'iothub-telemetry-in',
            z: 'bench',
            hub: 'hub',
            consumerGroup: '$Default',
            partitions: '',
            startPosition: 'earliest',
            output: 'auto',
            prefetch: params.prefetch,
            wires: [['sink']],
          },
          sink('sink'),
        ],
        { hub: { connectionString: hub.serviceConnectionString } },
      );
      const clock = new ArrivalClock(params.messages);
      let failure: Error | undefined;
      runtime.node('sink').on('input', () => clock.arrived());
      runtime.node('errors').on('input', (msg) => {
        failure ??= new Error(String((msg.error as { message?: string } | undefined)?.message ?? 'telemetry-in reported an error'));
      });
      try {
        const result = await within(clock.done, ROUND_LIMIT_MS, 'draining the partitions');
        if (failure) throw failure;
        return result;
      } finally {
        // An empty flow closes the node and both of its connections before the next round.
        await runtime.deploy(benchFrame());
      }
    },
    async close() {
      await red?.stop();
    },
  };
}
