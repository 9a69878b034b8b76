/**
 * The client and the simulator reach into rhea and rhea-promise where their public APIs say nothing
 * (package.json pins both to the exact versions these work-arounds were written for). This test names
 * every internal the code relies on and fails the day an upgrade moves one, before any behaviour
 * quietly changes: src/amqp/rhea-internals.ts holds every accessor (delivery slots, credit, attach and
 * begin frames, the socket, transfers being gathered); src/simulator/frame-fields.ts and the simulator's
 * SASL set-up use rhea's frame queues and types.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as frames from 'rhea/lib/frames.js';
import * as terminus from 'rhea/lib/terminus.js';
import rhea = require('rhea');
import { Connection, type Sender } from 'rhea-promise';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub, waitFor } from '../helpers/hub';

type Bag = Record<string, unknown>;

const has = (value: unknown, path: string): boolean => {
  let at: unknown = value;
  for (const key of path.split('.')) {
    if (at === null || at === undefined) return false;
    at = (at as Bag)[key];
  }
  return at !== undefined;
};

describe('the rhea and rhea-promise internals this package uses', function () {
  let hub: SimulatedHub | undefined;
  let client: Connection | undefined;
  afterEach(async () => {
    await client?.close().catch(() => undefined);
    await hub?.close();
    client = undefined;
    hub = undefined;
  });

  it('are installed at the versions package.json pins', () => {
    const read = (file: string): { version?: string; dependencies?: Record<string, string> } =>
      JSON.parse(readFileSync(file, 'utf8')) as { version?: string; dependencies?: Record<string, string> };
    const pinned = read(path.resolve(__dirname, '..', '..', '..', 'package.json')).dependencies ?? {};
    assert.equal(pinned.rhea, read(require.resolve('rhea/package.json')).version);
    assert.equal(pinned['rhea-promise'], read(require.resolve('rhea-promise/package.json')).version);
  });

  it('frame and type definitions: composites whose fields are prototype accessors, described lists, Null and List32', () => {
    const attach = frames.attach({ name: 'x', handle: 0, role: false }) as unknown as Bag & { described(): Bag };
    assert.ok(Array.isArray(attach.value), 'a composite keeps its fields in `value`');
    const described = attach.described();
    assert.ok(described.descriptor !== undefined && Array.isArray(described.value), 'described() gives a typed list with a descriptor');
    assert.equal(typeof (rhea.types as unknown as Bag).Null, 'function');
    assert.equal(typeof (rhea.types as unknown as Bag).List32, 'function');
    assert.equal(typeof (terminus.source({ address: 'a' }) as { described?: unknown }).described, 'function');
    for (const outcome of ['accepted', 'rejected', 'released', 'modified']) {
      assert.equal(typeof ((rhea.message as unknown as Bag)[outcome] as (() => { described(): unknown }) | undefined)?.().described, 'function', outcome);
    }
  });

  it('connection, session, link and delivery internals on both ends of a real connection', async () => {
    hub = await startTestHub();
    const sim = hub;
    const accepted: rhea.Connection[] = [];
    // The simulator's container hands out the server side of each connection it accepts.
    (sim as unknown as { container: rhea.Container }).container.on('connection_open', (ctx: rhea.EventContext) => accepted.push(ctx.connection));
    client = new Connection({ transport: 'tcp', host: '127.0.0.1', port: Number(sim.ports.amqp), reconnect: false, username: 'iothubowner' });
    await client.open();
    await waitFor(() => accepted.length === 1, 'the server side of the connection');
    const server = accepted[0] as unknown as Bag;
    // Server side: the frame queues frame-fields.ts completes, and the SASL layer sasl.ts reads.
    assert.equal(typeof (server.amqp_transport as Bag | undefined)?.encode, 'function', 'connection.amqp_transport.encode');
    const sasl = server.sasl_transport as Bag | undefined;
    assert.ok(sasl?.transports !== undefined && has(sasl, 'transports.3.transport.encode'), 'sasl_transport.transports[3].transport.encode');
    assert.ok('selected' in (sasl ?? {}), 'sasl_transport.selected');
    assert.ok(has(sasl, 'transports.3.mechanism'), 'sasl_transport.transports[3].mechanism');

    // Client side: rhea-promise's rhea connection and its socket (hub-connection.ts).
    const inner = (client as unknown as Bag)._connection as Bag | undefined;
    assert.ok(inner, 'rhea-promise Connection._connection');
    assert.equal(typeof (inner.socket as Bag | undefined)?.destroy, 'function', '_connection.socket.destroy');

    // A sender: its rhea link's credit counts (links.ts), its session's delivery buffer (amqp.ts).
    const sender: Sender = await client.createSender({ target: { address: '$cbs' } });
    const link = (sender as unknown as Bag)._link as Bag | undefined;
    assert.equal(typeof link?.credit, 'number', 'Sender._link.credit');
    assert.equal(typeof link?.delivery_count, 'number', 'Sender._link.delivery_count');
    assert.ok(has(link, 'local.attach') && has(link, 'remote.attach'), 'link.local.attach and link.remote.attach');
    const session = link?.session as Bag | undefined;
    const buffer = (session?.outgoing as Bag | undefined)?.deliveries as Bag | undefined;
    for (const field of ['size', 'head', 'capacity', 'entries']) assert.ok(buffer !== undefined && field in buffer, `session.outgoing.deliveries.${field}`);
    assert.ok(has(session, 'local.begin'), 'session.local.begin');
    // Transfers being gathered (guard.ts through watchTransfers).
    assert.equal(typeof session?.on_transfer, 'function', 'session.on_transfer');
    assert.equal(typeof session?._get_link, 'function', 'session._get_link');
    const delivery = sender.send({ body: 'x' }) as unknown as Bag;
    for (const field of ['settled', 'remote_settled', 'link']) assert.ok(field in delivery, `delivery.${field}`);
    // A remote terminus is a composite that writes itself back (amqp.ts answerAttach).
    assert.equal(
      typeof (link?.remote as { attach?: { target?: { described?: unknown } } }).attach?.target?.described,
      'function',
      'remote.attach.target.described',
    );
  });
});
