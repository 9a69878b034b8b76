/**
 * The pure rules of direct methods and twins: twin merges and their limits, the simulator's twin
 * versions and etags, the Device list of method-in, and how msgs choose an action or a status.
 */
import { strict as assert } from 'node:assert';
import { isPlainObject, methodsAddress, twinAddress } from '../../src/amqp/method-twin-wire';
import { answerStatus, desiredAction, deviceList, twinAction } from '../../src/nodes/method-twin-fields';
import { errorOf } from '../../src/iothub/service-api';
import rhea = require('rhea');
import { methodRequest } from '../../src/simulator/direct-methods';
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

describe('service REST errors: the shapes IoT Hub writes', () => {
  // Message holding the error as JSON, the name in iothub-errorcode: a real hub's answer to a method call on
  // an offline device (azure-iot-sdk-csharp issue #3442; ExceptionHandlingHelperTests.cs).
  const offline = JSON.stringify({
    Message: JSON.stringify({
      errorCode: 404103,
      trackingId: 'abc-TimeStamp:03/14/2024 09:54:49',
      message: "The operation failed because the requested device isn't online or hasn't registered the direct method callback.",
      info: { timeout: '00:00:00' },
      timestampUtc: '2024-03-14T09:54:49.6536567Z',
    }),
    ExceptionMessage: '',
  });

  it('a 404 with 404103 inside Message is DeviceNotOnline, with or without the header', () => {
    for (const header of ['DeviceNotOnline', undefined]) {
      const error = errorOf(404, offline, header);
      assert.equal(error.code, 'DeviceNotOnline');
      assert.deepEqual(error.info, { status: 404, errorCode: 404103, errorName: 'DeviceNotOnline' });
      assert.match(error.message, /\(404103\): The operation failed because the requested device isn't online/);
    }
  });

  it('the header alone names the code when the body has none; the older Message shape is read too', () => {
    assert.equal(errorOf(504, '', 'GatewayTimeout').info?.errorCode, 504101);
    const older = errorOf(
      404,
      JSON.stringify({ Message: 'ErrorCode:DeviceNotOnline;Timed out waiting for device to connect.', ExceptionMessage: 'Tracking ID:x' }),
      undefined,
    );
    assert.equal(older.code, 'DeviceNotOnline');
    assert.equal(older.info?.errorCode, 404103);
    assert.match(older.message, /Timed out waiting for device to connect/);
    assert.equal(
      errorOf(412, JSON.stringify({ Message: JSON.stringify({ errorCode: 412001, message: 'etag' }) }), 'PreconditionFailed').code,
      'PreconditionFailed',
    );
    assert.equal(errorOf(404, 'not json', undefined).code, 'DeviceNotFound', 'a bare 404 is still DeviceNotFound');
  });

  it('the simulator writes what the client and the C# SDK read: the JSON inside Message and the name in the header', () => {
    const error = new ServiceError(404, 404103, 'DeviceNotOnline', 'Timed out waiting for device to connect; really.', { timeout: '00:00:00' });
    const body = JSON.parse(error.body('t-1')) as { Message: string; ExceptionMessage: string; errorCode?: unknown };
    assert.equal(body.errorCode, undefined, 'no top-level errorCode: the hub has none');
    const inner = JSON.parse(body.Message) as Record<string, unknown>;
    assert.equal(inner.errorCode, 404103);
    assert.equal(inner.trackingId, 't-1');
    assert.ok(!body.Message.includes(';'), 'azure-iothub splits Message at ;');
    assert.deepEqual(error.headers(), { 'iothub-errorcode': 'DeviceNotOnline' });
    assert.equal(errorOf(404, error.body('t-1'), error.headers()['iothub-errorcode']).code, 'DeviceNotOnline');
    // DeviceNotFound keeps the older shape: azure-iothub makes DeviceNotFoundError only of it (rest_api_client.js translateError).
    const gone = JSON.parse(new ServiceError(404, 404001, 'DeviceNotFound', 'Device x not registered.').body('t-2')) as { Message: string };
    assert.match(gone.Message, /^ErrorCode:DeviceNotFound;Device x not registered\.$/);
  });
});

describe('simulator: a method request on the wire', () => {
  it('carries the request id as an AMQP uuid (0x98 and its 16 bytes), as the device SDKs read it', () => {
    const id = '0f8fad5b-d9cb-469f-a165-70867728950e';
    const message = methodRequest(id, { methodName: 'reboot', payload: { now: true } });
    const wire = rhea.message.encode(message);
    const uuid = Buffer.from(id.replace(/-/g, ''), 'hex');
    assert.ok(wire.includes(Buffer.concat([Buffer.from([0x98]), uuid])), 'correlation-id as uuid');
    assert.equal(message.application_properties?.['IoThub-methodname'], 'reboot');
  });
});
