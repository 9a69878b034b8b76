/**
 * TelemetryReader against the simulator over real sockets: the redirect and the connection it owns,
 * checkpoints through its store, and its start retries on the Backoff schedule, waited through a clock
 * the test holds.
 */
import { strict as assert } from 'node:assert';
import type { Clock, ClockTimer } from '../../src/iothub/backoff';
import { checkpointKey, type StoredCheckpoints } from '../../src/iothub/checkpoints';
import { parseConnectionString } from '../../src/iothub/connection-string';
import type { HubError } from '../../src/iothub/errors';
import type { TelemetryEvent } from '../../src/iothub/event-hub';
import { HubConnection, type HubConnectionOptions } from '../../src/iothub/hub-connection';
import { TelemetryReader, type CheckpointStore, type TelemetryReaderOptions, type TelemetryReaderStatus } from '../../src/iothub/telemetry-reader';
import type { SimulatedHub } from '../../src/simulator';
import { partitionForDevice } from '../../src/simulator/partitions';
import { delay, startTestHub, waitFor } from '../helpers/hub';

interface Wait {
  ms: number;
  fn: () => void;
  done: boolean;
}

/** A clock whose waits run only when the test says so. */
class HeldClock implements Clock {
  readonly waits: Wait[] = [];
  now(): number {
    return Date.now();
  }
  setTimeout(fn: () => void, ms: number): ClockTimer {
    const wait: Wait = { ms, fn, done: false };
    this.waits.push(wait);
    return { id: wait };
  }
  clearTimeout(timer: ClockTimer): void {
    (timer.id as Wait).done = true;
  }
  pending(): Wait[] {
    return this.waits.filter((w) => !w.done);
  }
  run(wait: Wait): void {
    wait.done = true;
    wait.fn();
  }
}

class MemoryStore implements CheckpointStore {
  saves = 0;
  constructor(public value: unknown = undefined) {}
  async load(): Promise<unknown> {
    return this.value;
  }
  async save(checkpoints: StoredCheckpoints): Promise<void> {
    this.saves += 1;
    this.value = JSON.parse(JSON.stringify(checkpoints));
  }
}

describe('TelemetryReader', function () {
  this.timeout(30_000);
  let hub: SimulatedHub | undefined;
  const connections: HubConnection[] = [];
  const readers: TelemetryReader[] = [];

  afterEach(async () => {
    for (const r of readers.splice(0)) await r.close();
    for (const c of connections.splice(0)) await c.close();
    await hub?.close();
    hub = undefined;
  });

  function options(sim: SimulatedHub, extra: HubConnectionOptions = {}): HubConnectionOptions {
    return { transport: 'amqp', port: sim.ports.amqp, connectHost: '127.0.0.1', reconnectMinMs: 1000, reconnectMaxMs: 8000, ...extra };
  }

  function shared(sim: SimulatedHub, connectionString: string, extra: HubConnectionOptions = {}): HubConnection {
    const connection = new HubConnection(parseConnectionString(connectionString, { gatewayPolicy: true }), options(sim, extra));
    connections.push(connection);
    connection.open();
    return connection;
  }

  function reader(
    sim: SimulatedHub,
    connection: HubConnection,
    extra: Partial<TelemetryReaderOptions> = {},
    connectionExtra: HubConnectionOptions = {},
  ): TelemetryReader {
    const made = new TelemetryReader({
      connection: async () => connection,
      connectionOptions: async () => options(sim, connectionExtra),
      consumerGroup: '$Default',
      partitions: [],
      start: { kind: 'earliest' },
      prefetch: 10,
      ...extra,
    });
    readers.push(made);
    return made;
  }

  /** `count` events, from devices spread over every partition. */
  function ingest(sim: SimulatedHub, count: number, tag: string): void {
    const partitions = sim.options.partitionCount;
    const devices: string[] = [];
    for (let i = 0; devices.length < partitions; i++) if (partitionForDevice(`dev-${i}`, partitions) === devices.length) devices.push(`dev-${i}`);
    for (let i = 0; i < count; i++) sim.ingest(devices[i % partitions], undefined, { message_id: `${tag}-${i}`, body: `${tag} ${i}` });
  }

  it('follows the redirect of an IoT Hub connection, reads every partition, and closes only the connection it made', async () => {
    hub = await startTestHub({ partitionCount: 2 });
    const sim = hub;
    ingest(sim, 6, 'all');
    const connection = shared(sim, sim.serviceConnectionString());
    const telemetry = reader(sim, connection);
    const events: TelemetryEvent[] = [];
    const statuses: TelemetryReaderStatus[] = [];
    telemetry.on('event', (e) => events.push(e));
    telemetry.on('status', (s) => statuses.push(s));
    telemetry.start();
    await waitFor(() => events.length === 6, 'six events');
    assert.deepEqual(events.map((e) => String(e.message.message_id)).sort(), ['all-0', 'all-1', 'all-2', 'all-3', 'all-4', 'all-5']);
    assert.deepEqual(new Set(events.map((e) => e.partitionId)), new Set(['0', '1']));
    assert.equal(sim.snapshot().connections, 2, 'the shared connection and the one to the built-in endpoint');
    await waitFor(() => statuses.some((s) => s.kind === 'connection' && s.state === 'open'), 'an open status');
    await telemetry.close();
    await waitFor(() => sim.snapshot().connections === 1, "the reader's own connection closed");
    assert.equal(connection.state, 'open', "the shared connection is not the reader's to close");
  });

  it('reads an Event Hubs connection directly, with no second connection', async () => {
    hub = await startTestHub({ partitionCount: 2 });
    const sim = hub;
    ingest(sim, 3, 'eh');
    const connection = shared(sim, sim.eventHubConnectionString());
    const telemetry = reader(sim, connection, { partitions: ['0', '1'] });
    const events: TelemetryEvent[] = [];
    telemetry.on('event', (e) => events.push(e));
    telemetry.start();
    await waitFor(() => events.length === 3, 'three events');
    assert.equal(sim.snapshot().connections, 1);
    await telemetry.close();
    assert.equal(connection.state, 'open');
  });

  it("resumes after its endpoint's checkpoints, saves on the clock and on close under the endpoint's key, and keeps other endpoints' positions", async () => {
    hub = await startTestHub({ partitionCount: 1 });
    const sim = hub;
    ingest(sim, 5, 'old');
    const key = checkpointKey('localhost', sim.options.hubName, '$Default');
    const other = { 'elsewhere.servicebus.windows.net/hub/$default': { '0': 99 } };
    const store = new MemoryStore({ ...other, [key]: { '0': 2 } });
    const clock = new HeldClock();
    const connection = shared(sim, sim.serviceConnectionString());
    const telemetry = reader(sim, connection, { checkpoints: store, clock, checkpointPolicy: { everyMs: 5000 } });
    const events: TelemetryEvent[] = [];
    telemetry.on('event', (e) => events.push(e));
    telemetry.start();
    await waitFor(() => events.length === 2, 'the events after the checkpoint');
    await delay(100);
    assert.deepEqual(
      events.map((e) => e.sequenceNumber),
      [3, 4],
      'resumed right after sequence number 2',
    );
    assert.equal(store.saves, 0, 'nothing saved before the clock says so');
    const saveWait = clock.pending().find((w) => w.ms === 5000);
    assert.ok(saveWait, `a checkpoint wait of checkpointPolicy.everyMs: ${JSON.stringify(clock.pending().map((w) => w.ms))}`);
    clock.run(saveWait);
    await waitFor(() => store.saves === 1, 'the periodic save');
    assert.deepEqual(store.value, { ...other, [key]: { '0': 4 } });
    ingest(sim, 1, 'new');
    await waitFor(() => events.length === 3, 'one more event');
    await telemetry.close();
    await waitFor(() => store.saves === 2, 'the save on close');
    assert.deepEqual(store.value, { ...other, [key]: { '0': 5 } });
  });

  it('a store that cannot be read is reported, and reading starts from the start position', async () => {
    hub = await startTestHub({ partitionCount: 1 });
    const sim = hub;
    ingest(sim, 2, 'any');
    const store: CheckpointStore = {
      load: async () => {
        throw new Error('disk gone');
      },
      save: async () => undefined,
    };
    const connection = shared(sim, sim.serviceConnectionString());
    const telemetry = reader(sim, connection, { checkpoints: store });
    const problems: string[] = [];
    const events: TelemetryEvent[] = [];
    telemetry.on('checkpointError', (operation, err) => problems.push(`${operation}: ${err.message}`));
    telemetry.on('event', (e) => events.push(e));
    telemetry.start();
    await waitFor(() => events.length === 2, 'both events from the start');
    assert.deepEqual(problems, ['load: disk gone']);
  });

  it('a start that fails for a passing reason is retried on the backoff schedule through its clock, and reads once the hub is back', async () => {
    hub = await startTestHub({ partitionCount: 1 });
    const sim = hub;
    ingest(sim, 2, 'late');
    sim.faults.refuseConnections(60_000);
    // The connection retries on its own timers; only the reader's waits go through the test's clock.
    // Operation timeouts far longer than a refusal takes: each failure must be the refusal itself,
    // which a 300 ms timeout could overtake on a busy machine (Timeout instead of NotConnected).
    const connection = shared(sim, sim.serviceConnectionString(), { reconnectMinMs: 50, reconnectMaxMs: 200, operationTimeoutMs: 5000 });
    const clock = new HeldClock();
    const telemetry = reader(sim, connection, { clock }, { reconnectMinMs: 1000, reconnectMaxMs: 8000, operationTimeoutMs: 5000 });
    const retries: Array<{ code: string; attempt: number; delayMs: number }> = [];
    const failures: TelemetryReaderStatus[] = [];
    const events: TelemetryEvent[] = [];
    telemetry.on('retrying', (err, attempt, delayMs) => retries.push({ code: err.code, attempt, delayMs }));
    telemetry.on('status', (s) => {
      if (s.kind === 'failed') failures.push(s);
    });
    telemetry.on('event', (e) => events.push(e));
    telemetry.start();
    for (let attempt = 0; attempt < 3; attempt++) {
      await waitFor(() => retries.length === attempt + 1, `retry ${attempt}`);
      assert.equal(clock.pending().length, 1, 'one armed wait, never two');
      clock.run(clock.pending()[0]);
    }
    await waitFor(() => retries.length === 4, 'the fourth failure');
    // The connection's own failure, not a Timeout of the redirect probe waiting on a connection that cannot be made.
    assert.deepEqual(
      retries.map((r) => [r.code, r.attempt]),
      [
        ['NotConnected', 0],
        ['NotConnected', 1],
        ['NotConnected', 2],
        ['NotConnected', 3],
      ],
    );
    // backoffDelay: attempt n waits between half and all of min(max, min * 2^n).
    retries.forEach((r, n) => {
      const ceiling = Math.min(8000, 1000 * 2 ** n);
      assert.ok(r.delayMs >= ceiling / 2 && r.delayMs <= ceiling, `attempt ${n}: ${r.delayMs} ms outside [${ceiling / 2}, ${ceiling}]`);
      assert.equal(clock.waits[n].ms, r.delayMs, 'the wait told is the wait armed');
    });
    assert.equal(failures.length, 4, 'each failed start shows in the status');
    assert.equal(events.length, 0);
    sim.faults.refuseConnections(0);
    await waitFor(() => connection.state === 'open', 'the shared connection back');
    clock.run(clock.pending()[0]);
    await waitFor(() => events.length === 2, 'the events once the hub is back');
    assert.equal(clock.pending().length, 0, 'no retry armed after the start succeeded');
    await telemetry.close();
  });

  it('close during a retry wait cancels it', async () => {
    hub = await startTestHub({ partitionCount: 1 });
    const sim = hub;
    sim.faults.refuseConnections(60_000);
    const connection = shared(sim, sim.serviceConnectionString(), { reconnectMinMs: 50, reconnectMaxMs: 200, operationTimeoutMs: 200 });
    const clock = new HeldClock();
    const telemetry = reader(sim, connection, { clock }, { operationTimeoutMs: 200 });
    let retries = 0;
    telemetry.on('retrying', () => retries++);
    telemetry.start();
    await waitFor(() => retries === 1, 'the first retry');
    assert.equal(clock.pending().length, 1);
    await telemetry.close();
    assert.equal(clock.pending().length, 0, 'the wait was cancelled');
  });

  it('a refusal retrying cannot cure stops it with `failed`, and nothing is retried', async () => {
    hub = await startTestHub({ partitionCount: 1 });
    const sim = hub;
    // The `device` policy has DeviceConnect only: the hub refuses its way to the built-in endpoint.
    const connection = shared(sim, sim.serviceConnectionString('device'));
    const clock = new HeldClock();
    const telemetry = reader(sim, connection, { clock });
    const failed: HubError[] = [];
    let retries = 0;
    telemetry.on('failed', (err) => failed.push(err));
    telemetry.on('retrying', () => retries++);
    telemetry.start();
    await waitFor(() => failed.length === 1, 'the failure');
    assert.equal(failed[0].code, 'Unauthorized');
    await delay(200);
    assert.equal(retries, 0);
    assert.equal(clock.pending().length, 0);
    assert.equal(sim.snapshot().connections, 1, 'no connection to the built-in endpoint was made');
  });
});
