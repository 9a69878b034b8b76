/**
 * The core telemetry reader against the simulator's Event Hubs surface: a resume position past the end
 * of a partition (checkpoints of a recreated hub, or of another hub) is refused by the service, and the
 * reader starts that partition over from its start position instead of failing the same way for ever.
 */
import { strict as assert } from 'node:assert';
import { parseConnectionString } from '../../src/iothub/connection-string';
import type { HubError } from '../../src/iothub/errors';
import { PartitionReaders, type TelemetryEvent } from '../../src/iothub/event-hub';
import { HubConnection } from '../../src/iothub/hub-connection';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub, waitFor } from '../helpers/hub';

describe('PartitionReaders', function () {
  this.timeout(30_000);
  let hub: SimulatedHub | undefined;
  let connection: HubConnection | undefined;
  let readers: PartitionReaders | undefined;
  afterEach(async () => {
    await readers?.close();
    await connection?.close();
    await hub?.close();
    readers = undefined;
    connection = undefined;
    hub = undefined;
  });

  it('a checkpoint past the end of a partition is refused as Event Hubs refuses it, dropped once, and the partition read from the start position', async () => {
    hub = await startTestHub({ partitionCount: 2 });
    const sim = hub;
    for (let i = 0; i < 6; i++) sim.ingest(`dev-${i}`, undefined, { message_id: `m-${i}`, body: `reading ${i}` });
    const stored = [...sim.events()];
    connection = new HubConnection(parseConnectionString(sim.eventHubConnectionString()), {
      transport: 'amqp',
      connectHost: '127.0.0.1',
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
    });
    const resets: Array<{ partitionId: string; after: number; error: HubError }> = [];
    const events: TelemetryEvent[] = [];
    // Positions from a hub that had read far more: 5,000 in partition 0; partition 1 is still valid.
    readers = new PartitionReaders(connection, sim.options.hubName, {
      consumerGroup: '$Default',
      partitions: ['0', '1'],
      start: { kind: 'earliest' },
      prefetch: 10,
      resumeAfter: { '0': 5000, '1': -1 },
    });
    readers.on('reset', (partitionId: string, after: number, error: HubError) => resets.push({ partitionId, after, error }));
    readers.on('event', (e: TelemetryEvent) => events.push(e));
    await waitFor(() => events.length === stored.length, `all ${stored.length} events`);
    assert.equal(resets.length, 1, 'one reset, for the partition whose checkpoint is past its end');
    assert.equal(resets[0].partitionId, '0');
    assert.equal(resets[0].after, 5000);
    assert.equal(resets[0].error.condition, 'com.microsoft:argument-error');
    const last0 = stored.filter((e) => e.partitionId === '0').length - 1;
    assert.ok(
      resets[0].error.message.startsWith(`The supplied sequence number '5000' is invalid. The last sequence number in the system is '${last0}' TrackingId:`),
      resets[0].error.message,
    );
    assert.deepEqual(
      events.map((e) => `${e.partitionId}/${e.sequenceNumber}`).sort(),
      stored.map((e) => `${e.partitionId}/${e.event.sequenceNumber}`).sort(),
      'every event once, partition 0 from the start position',
    );
    assert.equal(readers.positions()['0'], last0);
  });
});
