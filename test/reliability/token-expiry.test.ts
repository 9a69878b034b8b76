/**
 * Token expiry enforced by the hub while renewal is blocked: the hub detaches every link whose token
 * lapsed ("Token Invalid."), put-token is refused or never answered, and once the token service is back
 * every client gets a fresh token by itself, re-attaches, and delivers everything held meanwhile.
 */
import { strict as assert } from 'node:assert';
import rhea = require('rhea');
import { parseConnectionString } from '../../src/iothub/connection-string';
import type { HubError } from '../../src/iothub/errors';
import { HubConnection } from '../../src/iothub/hub-connection';
import { HubSender } from '../../src/iothub/links';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub } from '../helpers/hub';
import { until } from './faults';
import { Ledger, problemsOf } from './ledger';
import { Pipeline } from './pipeline';

const DEVICES = ['tok-a', 'tok-b'];
const LONG = 10 * 60_000;

describe('reliability: token expiry with renewal blocked', function () {
  this.timeout(120_000);
  let hub: SimulatedHub | undefined;
  let pipeline: Pipeline | undefined;
  const connections: HubConnection[] = [];

  afterEach(async () => {
    await pipeline?.close();
    pipeline = undefined;
    for (const c of connections.splice(0)) await c.close();
    await hub?.close();
    hub = undefined;
  });

  it('the hub expires every token and refuses new ones: nodes and devices recover with fresh tokens, nothing lost', async () => {
    hub = await startTestHub({ c2d: { maxQueueDepth: 10_000 }, sweepIntervalMs: 50 });
    const started = hub;
    pipeline = await Pipeline.start(started, { devices: DEVICES });
    await pipeline.waitReady();
    pipeline.burst(5);
    await pipeline.drain();
    const linksBefore = started.snapshot().links;
    started.faults.blockPutTokens(LONG, 'refuse');
    const refusedBefore = started.stats.putTokensRefused;
    started.faults.expireTokens();
    pipeline.markFault();
    pipeline.burst(5);
    // Every client tried to get a fresh token and was turned away, more than once.
    await until(
      () => started.stats.putTokensRefused >= refusedBefore + 6,
      () => `refused put-tokens (${started.stats.putTokensRefused - refusedBefore})`,
    );
    assert.ok(started.snapshot().links < linksBefore, 'the expired links were detached');
    assert.equal(pipeline.ready(), false);
    const putBefore = started.stats.putTokens;
    started.faults.blockPutTokens(0);
    await pipeline.waitReady();
    assert.ok(started.stats.putTokens > putBefore, 'fresh tokens were put');
    pipeline.burst(5);
    await pipeline.drain();
    assert.deepEqual(pipeline.problems(), []);
  });

  it('tokens run out while renewal is refused: statuses show it, then return to connected; nothing lost', async () => {
    hub = await startTestHub({ c2d: { maxQueueDepth: 10_000 }, sweepIntervalMs: 50, tokenGraceMs: 0 });
    const started = hub;
    pipeline = await Pipeline.start(started, { devices: DEVICES, tokenLifetimeSec: 5, tokenRenewMarginSec: 1 });
    await pipeline.waitReady();
    pipeline.burst(5);
    await pipeline.drain();
    const running = pipeline;
    started.faults.blockPutTokens(LONG, 'refuse');
    pipeline.burst(5);
    // Renewal comes about a second before expiry: each node shows the refusal when its turn comes.
    const refused = (id: string): boolean => (running.statuses.get(id) ?? []).includes('iothub-common.status.unauthorized');
    await until(
      () => refused('c2d') && refused('tin'),
      () => `both nodes to show the refused renewal (${['c2d', 'tin'].map((id) => running.statuses.get(id)?.slice(-2).join(' ')).join('; ')})`,
      60_000,
    );
    started.faults.blockPutTokens(0);
    await pipeline.waitReady();
    pipeline.burst(5);
    await pipeline.drain();
    assert.deepEqual(pipeline.problems(), []);
  });

  it('renewal goes unanswered: the hub detaches the lapsed link, the sender waits, then recovers and sends all', async () => {
    hub = await startTestHub({ sweepIntervalMs: 50, tokenGraceMs: 0 });
    const started = hub;
    const identity = parseConnectionString(started.deviceConnectionString('tok-silent'));
    const connection = new HubConnection(identity, {
      transport: 'amqps',
      connectHost: '127.0.0.1',
      ca: started.certificate?.cert,
      tokenLifetimeSec: 5,
      tokenRenewMarginSec: 1,
      operationTimeoutMs: 1500,
      reconnectMinMs: 50,
      reconnectMaxMs: 500,
    });
    connections.push(connection);
    const sender = new HubSender(connection, '/devices/tok-silent/messages/events', { deviceId: 'tok-silent' });
    const detachedWith: string[] = [];
    sender.on('detached', (err: HubError) => detachedWith.push(err.code));
    const ledger = new Ledger('D2C');
    const onD2c = (info: { message: rhea.Message }): void => ledger.received(String(info.message.message_id));
    started.on('d2c', onD2c);
    let n = 0;
    const send = (count: number): void => {
      for (let i = 0; i < count; i++) {
        const id = `silent-${n++}`;
        ledger.sending(id, 'tok-silent');
        sender.send({ message_id: id, body: rhea.message.data_section(Buffer.from(id)) } as rhea.Message).then(
          () => ledger.settled(id),
          (err: unknown) => ledger.settled(id, err),
        );
      }
    };
    send(5);
    await until(
      () => ledger.allSettled(),
      () => 'the first sends',
    );
    started.faults.blockPutTokens(LONG, 'ignore');
    await until(
      () => detachedWith.includes('Unauthorized'),
      () => `the hub to detach the lapsed link (detached: ${detachedWith.join(', ') || 'no'})`,
      60_000,
    );
    ledger.fault();
    send(5);
    started.faults.blockPutTokens(0);
    await until(
      () => ledger.allSettled() && ledger.allArrived(),
      () => `every message (${ledger.missing().length} missing, ${ledger.pendingCount} pending)`,
      60_000,
    );
    started.off('d2c', onD2c);
    assert.deepEqual(problemsOf('D2C', ledger.report(), { order: true }), []);
    assert.equal(connection.state, 'open');
  });
});
