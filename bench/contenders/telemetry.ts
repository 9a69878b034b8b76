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
import { Azurite } from '../../test/helpers/azurite';

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

/**
 * How telemetry-in runs: a msg per event with checkpoints in no store (`plain`), in a memory context
 * store every second (`context`) or in Blob storage (Azurite) every second (`blob`), or batches as
 * large as the credit (`batch`). Each round's node has an id of its own, so no round resumes where
 * the last one's checkpoints left off.
 */
export type TelemetryInVariant = 'plain' | 'context' | 'blob' | 'batch';

/** How often a Blob-checkpointed reader balances in the bench: each round starts alone and claims one partition a round. */
const BENCH_BALANCE_S = 0.1;

/** telemetry-in in a running Node-RED flow, redeployed each round to read from the earliest event. */
export function telemetryInNode(hub: HubInfo, params: BenchParams): Contender {
  return telemetryIn('plain')(hub, params);
}

export function telemetryIn(variant: TelemetryInVariant) {
  return (hub: HubInfo, params: BenchParams): Contender => telemetryInContender(hub, params, variant);
}

function telemetryInContender(hub: HubInfo, params: BenchParams, variant: TelemetryInVariant): Contender {
  let red: EmbeddedNodeRed | undefined;
  let azurite: Azurite | undefined;
  const frame = (): object[] => [...benchFrame(), connectionNode('hub', hub.certFile)];
  const settings = (index: number): Record<string, unknown> => {
    if (variant === 'batch') return { batchSize: params.prefetch, batchWait: 100 };
    if (variant === 'context') return { checkpointStore: 'default', checkpointSeconds: 1 };
    if (variant === 'blob') {
      // A container of its own each round: the last round's checkpoints would start this one at the end.
      return {
        checkpointKind: 'blob',
        container: `bench-round-${index < 0 ? `w${-index}` : index}`,
        checkpointSeconds: 1,
        updateInterval: BENCH_BALANCE_S,
        ownershipExpiry: 30,
      };
    }
    return {};
  };
  return {
    async setup() {
      if (variant === 'blob') azurite = await Azurite.start();
      red = await startNodeRed();
      return {};
    },
    async round(index: number) {
      const runtime = red as EmbeddedNodeRed;
      const credentials: Record<string, Record<string, string>> = { hub: { connectionString: hub.serviceConnectionString } };
      const id = `tin-${index < 0 ? `w${-index}` : index}`;
      if (azurite) credentials[id] = { storageConnectionString: azurite.connectionString };
      await runtime.deploy(
        [
          ...frame(),
          {
            id,
            type: 'iothub-telemetry-in',
            z: 'bench',
            hub: 'hub',
            consumerGroup: '$Default',
            partitions: '',
            startPosition: 'earliest',
            output: 'auto',
            prefetch: params.prefetch,
            ...settings(index),
            wires: [['sink']],
          },
          sink('sink'),
        ],
        credentials,
      );
      const clock = new ArrivalClock(params.messages);
      let failure: Error | undefined;
      runtime.node('sink').on('input', (msg) => clock.arrived(Array.isArray(msg.payload) ? msg.payload.length : 1));
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
      await azurite?.stop();
    },
  };
}
