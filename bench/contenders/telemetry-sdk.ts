/** Reading telemetry with @azure/event-hubs (its own module: only its worker loads the SDK). */
import { EventHubConsumerClient, earliestEventPosition } from '@azure/event-hubs';
import type { BenchParams, HubInfo } from '../protocol';
import { ArrivalClock, EVENT_HUBS_DEFAULTS_SAMPLE, ROUND_LIMIT_MS, within, type Contender } from '../runners';

/**
 * @azure/event-hubs EventHubConsumerClient.subscribe over all partitions: `tuned` with batches as large
 * as the other readers' credit (its best case), else with the options it has by default (batches of
 * one event, so it prefetches three per partition).
 */
export function eventHubsSdk(options: 'tuned' | 'defaults') {
  return (hub: HubInfo, params: BenchParams): Contender => subscriber(hub, params, options);
}

function subscriber(hub: HubInfo, params: BenchParams, options: 'tuned' | 'defaults'): Contender {
  let client: EventHubConsumerClient | undefined;
  return {
    async setup() {
      // TLS is trusted through NODE_EXTRA_CA_CERTS, set by the runner.
      client = new EventHubConsumerClient('$Default', hub.eventHubConnectionString);
      await client.getPartitionIds();
      return {};
    },
    async round() {
      const clock = new ArrivalClock(options === 'tuned' ? params.messages : Math.min(params.messages, EVENT_HUBS_DEFAULTS_SAMPLE));
      let failure: Error | undefined;
      const subscription = (client as EventHubConsumerClient).subscribe(
        {
          processEvents: async (events) => {
            if (events.length > 0) clock.arrived(events.length);
          },
          processError: async (err) => {
            failure ??= err;
          },
        },
        // The SDK prefetches three batches; a batch as large as the others' credit is its best case.
        options === 'tuned'
          ? { startPosition: earliestEventPosition, maxBatchSize: params.prefetch, maxWaitTimeInSeconds: 1 }
          : { startPosition: earliestEventPosition },
      );
      try {
        const result = await within(clock.done, ROUND_LIMIT_MS, 'draining the partitions');
        if (failure) throw failure;
        return result;
      } finally {
        await subscription.close();
      }
    },
    async close() {
      await client?.close();
    },
  };
}
