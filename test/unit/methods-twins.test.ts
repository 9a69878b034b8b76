/**
 * The pure rules of direct methods and twins: twin merges and their limits, the simulator's twin
 * versions and etags, the Device list of method-in, and how msgs choose an action or a status.
 */
import { strict as assert } from 'node:assert';
import { isPlainObject, methodsAddress, twinAddress } from '../../src/amqp/method-twin-wire';
import { answerStatus, desiredAction, deviceList, twinAction } from '../../src/nodes/method-twin-fields';
import { ServiceError } from '../../src/simulator/service-errors';
import { mergedSection, TwinStore } from '../../src/simulator/twins';

function refused(fn: () => unknown): ServiceError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ServiceError) return err;
    throw err;
  }
  assert.fail('expected a ServiceError');
}

describe('methods and twins: pure rules', () => {
  it('addresses of method and twin links, ids URL-encoded', () => {
    assert.equal(methodsAddress('d#1'), '/devices/d%231/methods/devicebound');
    assert.equal(methodsAddress('d1', 'm1'), '/devices/d1/modules/m1/methods/devicebound');
    assert.equal(twinAddress('d1'), '/devices/d1/twin');
    assert.equal(twinAddress('d1', 'm 1'), '/devices/d1/modules/m%201/twin');
  });

  it('a twin patch must be a JSON object', () => {
    assert.ok(isPlainObject({}));
    for (const bad of [null, [], 'x', 3, Buffer.from('{}')]) assert.ok(!isPlainObject(bad), String(bad));
  });

  it('merges: null removes, nested objects merge, $version and $metadata are ignored, other $-names refused', () => {
    const merged = mergedSection({ a: 1, b: { c: 2, d: 3 }, e: 5 }, { a: null, b: { c: null, x: 1 }, $version: 9, $metadata: {} }, 'desired');
    assert.deepEqual(merged, { b: { d: 3, x: 1 }, e: 5 });
    assert.equal(refused(() => mergedSection({}, { $own: 1 }, 'desired')).errorCode, 400004);
    assert.equal(refused(() => mergedSection({}, 'text', 'desired')).errorCode, 400006);
  });

  it('refuses nesting deeper than 10 and a section over 32 KB', () => {
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 10; i++) deep = { level: deep };
    assert.equal(refused(() => mergedSection({}, deep, 'desired')).errorCode, 400004);
    assert.equal(refused(() => mergedSection({}, { big: 'x'.repeat(33 * 1024) }, 'reported')).errorCode, 413001);
  });

  it('the simulator counts versions per section and for the twin, and its etag changes with every change', () => {
    const twins = new TwinStore();
    const first = twins.etag('d1');
    assert.deepEqual(twins.properties('d1'), { desired: { $version: 1 }, reported: { $version: 1 } });
    twins.patchFromService('d1', undefined, { properties: { desired: { a: 1 } } }, `"${first}"`);
    assert.notEqual(twins.etag('d1'), first);
    assert.equal(refused(() => twins.patchFromService('d1', undefined, { properties: { desired: { a: 2 } } }, `"${first}"`)).errorCode, 412001);
    twins.patchFromService('d1', undefined, { tags: { site: 'x' } }, '*');
    assert.equal(twins.patchReported('d1', undefined, { fw: '1' }), 2);
    const doc = twins.document('d1', undefined, false) as { version: number; properties: { desired: { $version: number } } };
    assert.equal(doc.version, 4, 'created, desired, tags, reported');
    assert.equal(doc.properties.desired.$version, 2);
    assert.equal(refused(() => twins.patchFromService('d1', undefined, { properties: { reported: { fw: '2' } } }, '*')).errorCode, 400004);
  });

  it('a desired patch is told to subscribers with its $version', () => {
    const twins = new TwinStore();
    const told: unknown[] = [];
    twins.on('desired', (key, patch) => told.push([key, patch]));
    twins.patchFromService('d1', 'm1', { properties: { desired: { speed: 3 } } }, undefined);
    assert.deepEqual(told, [['d1/m1', { speed: 3, $version: 2 }]]);
  });

  it("method-in's Device: one id, a list separated by commas or spaces, or empty for the connection's own", () => {
    assert.deepEqual(deviceList(''), ['']);
    assert.deepEqual(deviceList('a'), ['a']);
    assert.deepEqual(deviceList(' a, b  c,,a\n d '), ['a', 'b', 'c', 'd']);
  });

  it('the status of an answer: msg.statusCode, else the setting, else 200; numeric text reads as a number', () => {
    assert.equal(answerStatus(undefined, ''), 200);
    assert.equal(answerStatus(undefined, '202'), 202);
    assert.equal(answerStatus('404', 200), 404);
    assert.equal(answerStatus(500, 200), 500);
    assert.equal(answerStatus('fine', 200), 'fine', 'left for the core to refuse');
  });

  it('actions from msg.topic, else the setting', () => {
    assert.equal(twinAction('get', 'report'), 'get');
    assert.equal(twinAction('REPORTED', 'get'), 'report');
    assert.equal(twinAction('other', 'get'), 'get');
    assert.equal(twinAction(undefined, undefined), 'report');
    assert.equal(desiredAction('Get', 'update'), 'get');
    assert.equal(desiredAction('', 'get'), 'get');
    assert.equal(desiredAction(undefined, undefined), 'update');
  });
});
