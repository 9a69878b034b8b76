/**
 * The simulator writes every performative as Azure's AMQP stack does: each described list with all its
 * fields (nulls included), source and target as described composites, max-message-size on every attach,
 * handle-max in begin, and settled dispositions where the hub receives. Strict clients (pyamqp reads
 * fields by position; azure-uamqp-c needs described termini and max-message-size) fail without this.
 * The frames are read off the wire through a relay, exactly as a client receives them.
 */
import { strict as assert } from 'node:assert';
import * as frames from 'rhea/lib/frames.js';
import * as terminus from 'rhea/lib/terminus.js';
import rhea = require('rhea');
import { Connection, type ConnectionOptions } from 'rhea-promise';
import { CbsChannel } from '../../src/iothub/cbs';
import type { SimulatedHub } from '../../src/simulator';
import { HANDLE_MAX } from '../../src/simulator/amqp';
import { LIST_FIELD_COUNTS } from '../../src/simulator/frame-fields';
import { startTestHub, waitFor } from '../helpers/hub';
import { deviceToken, serviceToken } from '../helpers/raw';
import { readFrames, startWireTap, type WireFrame, type WireTap } from '../helpers/wire-tap';

interface Typed {
  type: { typecode: number };
  value: unknown;
  descriptor?: { value: unknown };
}

const NAMES: Record<number, string> = {
  0x10: 'open',
  0x11: 'begin',
  0x12: 'attach',
  0x13: 'flow',
  0x14: 'transfer',
  0x15: 'disposition',
  0x16: 'detach',
  0x17: 'end',
  0x18: 'close',
  0x40: 'sasl-mechanisms',
  0x44: 'sasl-outcome',
};
const NULL_TYPECODE = 0x40;

/** Fields rhea defines for a composite: one accessor each on its prototype (lib/types.js define_composite). */
function definedFields(instance: object): number {
  return Object.values(Object.getOwnPropertyDescriptors(Object.getPrototypeOf(instance))).filter((d) => d.get !== undefined).length;
}

function isDescribedList(value: unknown, code: number): value is Typed {
  const t = value as Typed;
  return typeof t === 'object' && t !== null && t.descriptor !== undefined && Number(t.descriptor.value) === code && Array.isArray(t.value);
}

/** Asserts a nested described list is complete; returns its fields. */
function assertComplete(value: unknown, code: number, where: string): unknown[] {
  assert.ok(isDescribedList(value, code), `${where} is not the described list 0x${code.toString(16)}: ${JSON.stringify(value)?.slice(0, 200)}`);
  const items = value.value as unknown[];
  assert.equal(items.length, LIST_FIELD_COUNTS.get(code), `${where} has ${items.length} fields`);
  return items;
}

const isNull = (v: unknown): boolean => (v as Typed).type?.typecode === NULL_TYPECODE;

describe('frames the simulator writes', function () {
  it('declares the field counts rhea itself defines for every performative and terminus', () => {
    const made: Array<[number, object]> = [
      [0x10, frames.open({ container_id: 'x' })],
      [0x11, frames.begin({ next_outgoing_id: 0, incoming_window: 0, outgoing_window: 0 })],
      [0x12, frames.attach({ name: 'x', handle: 0, role: false })],
      [0x13, frames.flow({ incoming_window: 0, next_outgoing_id: 0, outgoing_window: 0 })],
      [0x14, frames.transfer({ handle: 0 })],
      [0x15, frames.disposition({ role: false, first: 0 })],
      [0x16, frames.detach({ handle: 0 })],
      [0x17, frames.end({})],
      [0x18, frames.close({})],
      [0x41, frames.sasl_init({ mechanism: 'PLAIN' })],
      [0x28, terminus.source({})],
      [0x29, terminus.target({})],
    ];
    for (const [code, instance] of made) assert.equal(definedFields(instance), LIST_FIELD_COUNTS.get(code), `0x${code.toString(16)}`);
  });

  describe('on the wire', function () {
    let hub: SimulatedHub;
    let tap: WireTap;
    let connection: Connection | undefined;
    afterEach(async () => {
      await connection?.close().catch(() => undefined);
      connection = undefined;
      await tap?.close();
      await hub?.close();
    });

    it('carries every field of every performative, described termini, max-message-size, handle-max and settled dispositions', async () => {
      hub = await startTestHub({ d2c: { maxMessageBytes: 1000 } });
      tap = await startWireTap(Number(hub.ports.amqp));
      // SASL PLAIN with a service token: sasl-mechanisms and sasl-outcome come first.
      const options = {
        transport: 'tcp',
        host: '127.0.0.1',
        port: tap.port,
        reconnect: false,
        username: `iothubowner@sas.root.${hub.options.hubName}`,
        password: serviceToken(hub),
      };
      connection = new Connection(options as ConnectionOptions);
      await connection.open();
      const cbs = new CbsChannel(connection);
      await cbs.open();
      await cbs.putToken(`${hub.hostWithPort}/devices/conformance`, deviceToken(hub, 'conformance'));

      // A device sender asking for rcv-settle-mode second, as uAMQP's SendClient does: the hub still settles.
      const sender = await connection.createAwaitableSender({ target: { address: '/devices/conformance/messages/events' }, rcv_settle_mode: 1 });
      await sender.send({ body: 'fits' });
      await assert.rejects(sender.send({ body: 'x'.repeat(2000) }), 'an oversized message is rejected');

      // The hub as sender: one C2D message to the device, which takes it.
      const device = hub.registry.getDevice('conformance');
      assert.ok(device);
      assert.equal(hub.c2d.enqueue('conformance', undefined, device.generationId, { message_id: 'c2d-1', body: 'hello' } as rhea.Message), undefined);
      const receiver = await connection.createReceiver({ source: { address: '/devices/conformance/messages/devicebound' }, autoaccept: true });
      await new Promise<void>((resolve) => receiver.once('message', () => resolve()));

      // A refused attach (the built-in endpoint redirects), then the hub ending the session and the connection.
      // rhea-promise may resolve the attach before the detach arrives: wait for the detach itself.
      await connection.createReceiver({ source: { address: '/messages/events/ConsumerGroups/$Default/Partitions/0' } }).catch(() => undefined);
      await waitFor(() => readFrames(tap.fromServer()[0]).some((f) => f.code === 0x16 && !isNull(f.fields[2])), 'the redirect detach');
      hub.faults.endSessions();
      await waitFor(() => readFrames(tap.fromServer()[0]).some((f) => f.code === 0x17), 'the end frame');
      hub.faults.closeConnections();
      await waitFor(() => readFrames(tap.fromServer()[0]).some((f) => f.code === 0x18), 'the close frame');

      const seen = readFrames(tap.fromServer()[0]);
      const kinds = new Set(seen.map((f) => f.code));
      for (const code of Object.keys(NAMES).map(Number)) assert.ok(kinds.has(code), `the simulator sent no ${NAMES[code]} frame`);
      for (const frame of seen) checkFrame(frame);

      const begin = seen.find((f) => f.code === 0x11) as WireFrame;
      assert.equal((begin.fields[4] as Typed).value, HANDLE_MAX, 'begin states handle-max');
      const dispositions = seen.filter((f) => f.code === 0x15 && (f.fields[0] as Typed).type.typecode === 0x41);
      assert.ok(dispositions.length >= 3, 'dispositions for the put-token and both device messages');
      for (const d of dispositions) assert.equal((d.fields[3] as Typed).type.typecode, 0x41, 'where the hub receives, its dispositions are settled');
      const attaches = seen.filter((f) => f.code === 0x12);
      const d2cAttach = attaches.find(
        (a) => isDescribedList(a.fields[6], 0x29) && String(((a.fields[6] as Typed).value as Typed[])[0].value) === '/devices/conformance/messages/events',
      );
      assert.ok(d2cAttach, 'the D2C attach answer');
      assert.equal((d2cAttach.fields[4] as Typed).value, 0, 'the hub as receiver answers rcv-settle-mode first');
      assert.equal(Number((d2cAttach.fields[10] as Typed).value), 1000, 'the D2C link states the D2C size limit');
    });
  });
});

/** Every field present; nested termini, errors and outcomes complete and described. */
function checkFrame(frame: WireFrame): void {
  const name = NAMES[frame.code] ?? `0x${frame.code.toString(16)}`;
  assert.equal(frame.fields.length, LIST_FIELD_COUNTS.get(frame.code), `${name} has ${frame.fields.length} fields`);
  const f = frame.fields;
  switch (frame.code) {
    case 0x12:
      assert.ok(!isNull(f[10]), 'attach carries max-message-size');
      if (!isNull(f[5])) assertComplete(f[5], 0x28, 'attach source');
      if (!isNull(f[6])) assertComplete(f[6], 0x29, 'attach target');
      break;
    case 0x14:
      if (!isNull(f[7])) checkState(f[7], 'transfer state');
      break;
    case 0x15:
      checkState(f[4], 'disposition state');
      break;
    case 0x16:
      if (!isNull(f[2])) assertComplete(f[2], 0x1d, 'detach error');
      break;
    case 0x17:
    case 0x18:
      if (!isNull(f[0])) assertComplete(f[0], 0x1d, `${name} error`);
      break;
  }
}

function checkState(state: unknown, where: string): void {
  const code = Number((state as Typed).descriptor?.value);
  assert.ok(code >= 0x23 && code <= 0x27, `${where} is a described outcome`);
  const items = assertComplete(state, code, where);
  if (code === 0x25) assertComplete(items[0], 0x1d, `${where} error`);
}
