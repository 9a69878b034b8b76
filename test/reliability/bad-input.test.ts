/**
 * Generated input (fast-check): random msgs into c2d-send, with a live hub behind it. Whatever comes
 * in, Node-RED must not crash (the root hooks fail the suite on any uncaught error) and every msg must
 * end in exactly one done() or done(err), counted by a Complete and a Catch node scoped to the node.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import helper from 'node-red-node-test-helper';
import connectionNode from '../../src/nodes/iothub-connection';
import c2dSendNode from '../../src/nodes/iothub-c2d-send';
import deviceInNode from '../../src/nodes/iothub-device-in';
import deviceOutNode from '../../src/nodes/iothub-device-out';
import { stopLocalHubs } from '../../src/nodes/local-simulator';
import type { SimulatedHub } from '../../src/simulator';
import rhea = require('rhea');
import { startTestHub } from '../helpers/hub';
import { asOwner, openRaw } from '../helpers/raw';
import { until } from './faults';

helper.init(require.resolve('node-red'));

interface Outcome {
  _fc?: number;
  error?: { code?: string; message?: string };
}

interface HelperNode {
  on(event: 'input', listener: (msg: Outcome) => void): void;
  receive(msg: object): void;
}

const RUNS = Number(process.env.FC_RUNS ?? 100);

/** Any value a flow might put in a field, odd ones included. */
const anyValue = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(Symbol('odd'), () => 'a function', NaN, Infinity, -0, Object.create(null), new Error('an error')) },
  {
    weight: 6,
    arbitrary: fc.anything({
      maxDepth: 2,
      maxKeys: 4,
      withBigInt: true,
      withDate: true,
      withTypedArray: true,
      withSparseArray: true,
      withNullPrototype: true,
      withMap: true,
      withSet: true,
      withBoxedValues: true,
    }),
  },
);

/** Strings and values that look like ids, are nearly ids, or are nothing like ids. */
function idLike(valid: string[]): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.constantFrom(...valid, '', ' ', 'has space', 'x'.repeat(129), 'a/b', '%', '$edgeAgent'),
    fc.string({ maxLength: 20 }),
    fc.stringMatching(/^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,20}$/),
    anyValue,
  );
}

/** Payloads: small, exactly at the C2D limit and over it, and anything at all. */
const payload = fc.oneof(
  anyValue,
  fc.string({ maxLength: 50 }),
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  fc.constantFrom(64 * 1024, 64 * 1024 + 1, 300 * 1024).map((n) => Buffer.alloc(n, 1)),
  fc.dictionary(fc.string({ maxLength: 8 }), anyValue, { maxKeys: 5 }),
);

const time = fc.oneof(fc.date({ noInvalidDate: false }), fc.integer(), fc.constantFrom('2001-01-01T00:00:00Z', '2999-01-01T00:00:00Z', 'soon', ''), anyValue);

/** Msgs each node must refuse for a known reason, whatever the generator happens to make. */
const KNOWN_BAD: Array<Record<string, unknown>> = [
  { payload: 'x', deviceId: 'has space' },
  { payload: 'x', moduleId: 'a/b' },
  { payload: 'x', properties: { nested: { a: 1 } } },
  { payload: 'x', messageId: { not: 'a string' } },
  { payload: 'x', expiryTime: '2001-01-01T00:00:00Z' },
  { payload: 'x', ttl: 1e82 },
  { payload: Buffer.alloc(300 * 1024, 1) },
  { payload: 'x', deviceId: 'nobody' },
];

/** A msg with any subset of the fields c2d-send reads, each valid, nearly valid or absurd. */
function outgoingMsg(deviceIds: string[]): fc.Arbitrary<Record<string, unknown>> {
  return fc.record(
    {
      payload,
      topic: fc.oneof(fc.string({ maxLength: 10 }), anyValue),
      deviceId: idLike(deviceIds),
      moduleId: idLike(['mod1']),
      messageId: idLike(['m-1']),
      correlationId: idLike(['c-1']),
      contentType: fc.oneof(fc.constantFrom('application/json', 'text/plain'), anyValue),
      contentEncoding: fc.oneof(fc.constantFrom('utf-8', 'base64'), anyValue),
      userId: fc.oneof(fc.string({ maxLength: 10 }), anyValue),
      properties: fc.oneof(
        fc.dictionary(fc.string({ maxLength: 10 }), fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.boolean(), anyValue), { maxKeys: 5 }),
        anyValue,
      ),
      ack: fc.oneof(fc.constantFrom('none', 'positive', 'negative', 'full', 'FULL', 'sometimes'), anyValue),
      ttl: fc.oneof(fc.integer({ min: -10, max: 100_000 }), fc.double(), anyValue),
      expiryTime: time,
      creationTime: time,
    },
    { requiredKeys: [] },
  );
}

/**
 * Feeds each generated batch into `nodeId` (each item made into a msg by `toMsg` when it is sent),
 * waits until every msg has an outcome at `done`/`caught`, then checks that each had exactly one. A msg
 * sent after each batch flushes any late second outcome.
 */
async function feed<T>(
  nodeId: string,
  batches: fc.Arbitrary<T[]>,
  toMsg: (item: T) => Record<string, unknown>,
  sentinel: () => Record<string, unknown>,
  check: (item: T, outcome: string) => void = () => undefined,
  examples: T[][] = [],
): Promise<Map<number, string[]>> {
  const outcomes = new Map<number, string[]>();
  const record = (msg: Outcome, what: string): void => {
    if (typeof msg._fc !== 'number') return;
    const list = outcomes.get(msg._fc) ?? [];
    list.push(what);
    outcomes.set(msg._fc, list);
  };
  (helper.getNode('done') as unknown as HelperNode).on('input', (msg) => record(msg, 'done'));
  (helper.getNode('caught') as unknown as HelperNode).on('input', (msg) => {
    record(msg, `error ${msg.error?.code ?? '?'}`);
    if (process.env.RELIABILITY_VERBOSE && msg.error?.code === 'Error') process.stdout.write(`      ${msg.error.message}\n`);
  });
  const node = helper.getNode(nodeId) as unknown as HelperNode;
  let next = 0;
  await fc.assert(
    fc.asyncProperty(batches, async (items) => {
      const tags: Array<[number, T | undefined]> = [];
      for (const item of items) {
        const tag = next++;
        tags.push([tag, item]);
        node.receive({ ...toMsg(item), _fc: tag });
      }
      const flush = next++;
      tags.push([flush, undefined]);
      node.receive({ ...sentinel(), _fc: flush });
      await until(
        () => tags.every(([t]) => outcomes.has(t)),
        () => `outcomes for ${tags.filter(([t]) => !outcomes.has(t)).length} of ${tags.length} msgs`,
        15_000,
      );
      const wrong = tags.filter(([t]) => outcomes.get(t)?.length !== 1).map(([t]) => `${t}: ${outcomes.get(t)?.join(' + ')}`);
      assert.deepEqual(wrong, [], 'every msg ends in exactly one done() or done(err)');
      for (const [t, item] of tags) if (item !== undefined) check(item, (outcomes.get(t) as string[])[0]);
    }),
    // Known cases run first, every time; then whatever the generator makes.
    { numRuns: RUNS, examples: examples.map((e) => [e]) },
  );
  return outcomes;
}

/** A value in an assertion message, whatever it is. */
function shown(value: unknown): string {
  try {
    return String(value);
  } catch {
    return typeof value;
  }
}

/** Complete and Catch nodes scoped to `nodeId`, each into a helper. */
function outcomeNodes(nodeId: string): object[] {
  return [
    { id: 'completer', type: 'complete', z: 'tab', scope: [nodeId], uncaught: false, wires: [['done']] },
    { id: 'done', type: 'helper', z: 'tab', wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: [nodeId], uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

describe('reliability: generated bad input', function () {
  this.timeout(180_000);
  let hub: SimulatedHub | undefined;
  const clean: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    await helper.startServer();
  });

  afterEach(async () => {
    for (const c of clean.splice(0)) await c().catch(() => undefined);
    await helper.unload();
    await helper.stopServer();
    await stopLocalHubs();
    await hub?.close();
    hub = undefined;
  });

  it('c2d-send: any msg ends in exactly one done() or done(err), and the node keeps sending', async () => {
    hub = await startTestHub({ c2d: { maxQueueDepth: 100_000 } });
    hub.registry.addDevice('fc-dev');
    hub.registry.addModule('fc-other', 'mod1');
    const flow = [
      { id: 'tab', type: 'tab', label: 'bad input' },
      { id: 'svc', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 50, reconnectMax: 500 },
      { id: 'c2d', type: 'iothub-c2d-send', z: 'tab', hub: 'svc', deviceId: 'fc-dev', deviceIdType: 'str', ack: 'none', maxPending: 1000, wires: [['sent']] },
      { id: 'sent', type: 'helper', z: 'tab', wires: [] },
      ...outcomeNodes('c2d'),
    ];
    await helper.load([connectionNode, c2dSendNode], flow, { svc: { connectionString: hub.serviceConnectionString() } });
    const outcomes = await feed(
      'c2d',
      fc.array(outgoingMsg(['fc-dev', 'fc-other', 'nobody']), { minLength: 1, maxLength: 8 }),
      (m) => m,
      () => ({ payload: 'flush' }),
      undefined,
      [KNOWN_BAD],
    );
    const kinds = new Set([...outcomes.values()].flat());
    if (process.env.RELIABILITY_VERBOSE) process.stdout.write(`      outcomes: ${[...kinds].join(', ')}\n`);
    // The generator reached both ends: messages the hub took and messages refused for many reasons.
    assert.ok(kinds.has('done'), 'some msgs were sent');
    assert.ok([...kinds].filter((k) => k.startsWith('error')).length >= 4, `several kinds of failure (${[...kinds].join(', ')})`);
    assert.ok(hub.c2d.depth('fc-dev') > 0);
    assert.ok(!kinds.has('error Error'), 'every failure carries a code that says what is wrong');
  });

  it('device-out: any msg ends in exactly one done() or done(err), and the node keeps sending', async () => {
    hub = await startTestHub({ autoRegister: false, devices: [{ deviceId: 'fc-dev' }, { deviceId: 'fc-other', modules: [{ moduleId: 'mod1' }] }] });
    const flow = [
      { id: 'tab', type: 'tab', label: 'bad input' },
      // A gateway identity: msg.deviceId picks the device, the node's setting is the default.
      { id: 'gw', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 50, reconnectMax: 500 },
      { id: 'dout', type: 'iothub-device-out', z: 'tab', hub: 'gw', deviceId: 'fc-dev', deviceIdType: 'str', maxPending: 1000, wires: [['sent']] },
      { id: 'sent', type: 'helper', z: 'tab', wires: [] },
      ...outcomeNodes('dout'),
    ];
    await helper.load([connectionNode, deviceOutNode], flow, { gw: { connectionString: hub.serviceConnectionString('device') } });
    const outcomes = await feed(
      'dout',
      fc.array(outgoingMsg(['fc-dev', 'fc-other', 'nobody']), { minLength: 1, maxLength: 8 }),
      (m) => m,
      () => ({ payload: 'flush' }),
      undefined,
      [KNOWN_BAD],
    );
    const kinds = new Set([...outcomes.values()].flat());
    if (process.env.RELIABILITY_VERBOSE) process.stdout.write(`      outcomes: ${[...kinds].join(', ')}\n`);
    assert.ok(kinds.has('done'), 'some msgs were sent');
    assert.ok([...kinds].filter((k) => k.startsWith('error')).length >= 4, `several kinds of failure (${[...kinds].join(', ')})`);
    assert.ok(!kinds.has('error Error'), 'every failure carries a code that says what is wrong');
    assert.ok([...hub.events()].length > 0);
  });

  it('device-in: any settle command ends in exactly one done() or done(err), and real lock tokens settle once', async () => {
    hub = await startTestHub({ c2d: { maxQueueDepth: 100_000 } });
    const started = hub;
    started.registry.addDevice('fc-dev');
    const flow = [
      { id: 'tab', type: 'tab', label: 'bad input' },
      { id: 'gw', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 50, reconnectMax: 500 },
      { id: 'din', type: 'iothub-device-in', z: 'tab', hub: 'gw', deviceId: 'fc-dev', settle: 'manual', prefetch: 20, wires: [['received']] },
      { id: 'received', type: 'helper', z: 'tab', wires: [] },
      ...outcomeNodes('din'),
    ];
    await helper.load([connectionNode, deviceInNode], flow, { gw: { connectionString: started.serviceConnectionString('device') } });
    // Messages waiting for the device, topped up as the commands settle them.
    const client = await openRaw(started);
    clean.push(() => client.close());
    await asOwner(started, client);
    const c2d = await client.connection.createAwaitableSender({ target: { address: '/messages/devicebound' } });
    let queued = 0;
    const topUp = async (): Promise<void> => {
      while (started.c2d.depth('fc-dev') < 40) {
        await c2d.send({ message_id: `fc-${queued++}`, to: '/devices/fc-dev/messages/devicebound', body: 'x' } as rhea.Message);
      }
    };
    // Listening before anything is queued: device-in takes its prefetch at once.
    const fresh: string[] = [];
    const used: string[] = [];
    (helper.getNode('received') as unknown as { on(e: 'input', l: (m: { lockToken?: string }) => void): void }).on('input', (m) => {
      if (typeof m.lockToken === 'string') fresh.push(m.lockToken);
    });
    await topUp();
    await until(
      () => fresh.length >= 10,
      () => `messages at device-in (${fresh.length})`,
    );
    const SETTLES = ['complete', 'reject', 'abandon'];
    const command = fc.record({
      token: fc.oneof(fc.constantFrom('fresh', 'fresh', 'used'), fc.string({ maxLength: 40 }), fc.uuid(), anyValue),
      settle: fc.oneof(fc.constantFrom(...SETTLES, ...SETTLES, 'COMPLETE', 'delete', ''), anyValue),
    });
    type Command = { token: unknown; settle: unknown; resolved?: 'fresh' | 'used' | 'other' };
    const toMsg = (c: Command): Record<string, unknown> => {
      const valid = typeof c.settle === 'string' && SETTLES.includes(c.settle);
      let lockToken = c.token;
      c.resolved = 'other';
      if (c.token === 'fresh' && fresh.length > 0) {
        lockToken = fresh[0];
        c.resolved = 'fresh';
        // A valid settle uses the token up; an invalid one leaves it waiting.
        if (valid) used.push(fresh.shift() as string);
      } else if (c.token === 'used' && used.length > 0) {
        lockToken = used[Math.floor(used.length / 2)];
        c.resolved = 'used';
      }
      return { lockToken, settle: c.settle, payload: 'whatever' };
    };
    const check = (c: Command, outcome: string): void => {
      const valid = typeof c.settle === 'string' && SETTLES.includes(c.settle);
      if (!valid) assert.equal(outcome, 'error InvalidMessage', `settle ${shown(c.settle)}`);
      else if (c.resolved === 'fresh') assert.equal(outcome, 'done', 'a real lock token settles');
      else assert.match(outcome, /^error (MessageLockLost|InvalidMessage)$/, `token ${shown(c.token)}`);
    };
    const known: Command[] = [
      { token: 'fresh', settle: 'complete' },
      { token: 'used', settle: 'complete' },
      { token: 'fresh', settle: 'discard' },
      { token: 'not a lock token', settle: 'abandon' },
    ];
    const outcomes = await feed(
      'din',
      fc.array(command as fc.Arbitrary<Command>, { minLength: 1, maxLength: 6 }),
      toMsg,
      () => ({ lockToken: 'flush', settle: 'complete' }),
      (c, outcome) => {
        check(c, outcome);
        void topUp();
      },
      [known],
    );
    const kinds = new Set([...outcomes.values()].flat());
    assert.ok(kinds.has('done') && kinds.has('error MessageLockLost') && kinds.has('error InvalidMessage'), [...kinds].join(', '));
  });
});
