/** Which device a message is for, its link addresses, and the msg fields of a cloud-to-device message. */
import { strict as assert } from 'node:assert';
import rhea = require('rhea');
import type { Identity } from '../../src/iothub/connection-string';
import { deviceAddress, namedTarget, resolveTarget, targetName } from '../../src/iothub/device';
import { HubError } from '../../src/iothub/errors';
import { fromC2dMessage, toAmqpMessage } from '../../src/iothub/message';

const device: Identity = { kind: 'device', host: 'h.azure-devices.net', deviceId: 'pump-1', key: 'a2V5' };
const moduleIdentity: Identity = { kind: 'device', host: 'h.azure-devices.net', deviceId: 'pump-1', moduleId: 'flow', key: 'a2V5' };
const gateway: Identity = { kind: 'gateway', host: 'h.azure-devices.net', policy: 'device', key: 'a2V5' };

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof HubError ? err.code : `not a HubError: ${String(err)}`;
  }
  return 'no error';
}

describe('device targets', () => {
  it('a device identity is its own target; the same id (or none) is fine, another is IdentityMismatch', () => {
    assert.deepEqual(resolveTarget(device, {}), { deviceId: 'pump-1' });
    assert.deepEqual(resolveTarget(device, { deviceId: 'pump-1', moduleId: '' }), { deviceId: 'pump-1' });
    assert.equal(
      codeOf(() => resolveTarget(device, { deviceId: 'pump-2' })),
      'IdentityMismatch',
    );
    assert.equal(
      codeOf(() => resolveTarget(device, { moduleId: 'flow' })),
      'IdentityMismatch',
    );
  });

  it('a module identity is its device and module; another module is IdentityMismatch', () => {
    assert.deepEqual(resolveTarget(moduleIdentity, {}), { deviceId: 'pump-1', moduleId: 'flow' });
    assert.deepEqual(resolveTarget(moduleIdentity, { deviceId: 'pump-1', moduleId: 'flow' }), { deviceId: 'pump-1', moduleId: 'flow' });
    assert.equal(
      codeOf(() => resolveTarget(moduleIdentity, { moduleId: 'other' })),
      'IdentityMismatch',
    );
  });

  it('a gateway needs a valid device id and takes an optional module', () => {
    assert.deepEqual(resolveTarget(gateway, { deviceId: 'any-1' }), { deviceId: 'any-1' });
    assert.deepEqual(resolveTarget(gateway, { deviceId: 'any-1', moduleId: 'm' }), { deviceId: 'any-1', moduleId: 'm' });
    assert.equal(
      codeOf(() => resolveTarget(gateway, {})),
      'MissingDeviceId',
    );
    assert.equal(
      codeOf(() => resolveTarget(gateway, { deviceId: { id: 42 } })),
      'InvalidDeviceId',
    );
    assert.equal(
      codeOf(() => resolveTarget(gateway, { deviceId: 'a b' })),
      'InvalidDeviceId',
    );
    assert.equal(
      codeOf(() => resolveTarget(gateway, { deviceId: 'ok', moduleId: 'a/b' })),
      'InvalidModuleId',
    );
  });

  it('namedTarget (c2d-send): any valid device or module, checked before sending, addressed as the hub routes it', () => {
    assert.equal(deviceAddress(namedTarget({ deviceId: 'a#b' }), 'devicebound'), '/devices/a%23b/messages/devicebound');
    assert.equal(deviceAddress(namedTarget({ deviceId: 'pump-1', moduleId: 'flow' }), 'devicebound'), '/devices/pump-1/modules/flow/messages/devicebound');
    assert.deepEqual(namedTarget({ deviceId: 'pump-1', moduleId: '' }), { deviceId: 'pump-1' });
    assert.equal(
      codeOf(() => namedTarget({ deviceId: '' })),
      'MissingDeviceId',
    );
    assert.equal(
      codeOf(() => namedTarget({ deviceId: 'has space' })),
      'InvalidDeviceId',
    );
    assert.equal(
      codeOf(() => namedTarget({ deviceId: 'ok', moduleId: ['m'] })),
      'InvalidModuleId',
    );
  });

  it('a numeric id (PLC data) is its text, for a gateway, for the service and against a device identity', () => {
    assert.deepEqual(resolveTarget(gateway, { deviceId: 4711 }), { deviceId: '4711' });
    assert.deepEqual(resolveTarget(gateway, { deviceId: 4711, moduleId: 2 }), { deviceId: '4711', moduleId: '2' });
    assert.deepEqual(namedTarget({ deviceId: 12.5 }), { deviceId: '12.5' });
    assert.deepEqual(namedTarget({ deviceId: 10n }), { deviceId: '10' });
    const numbered: Identity = { kind: 'device', host: 'h.azure-devices.net', deviceId: '4711', key: 'a2V5' };
    assert.deepEqual(resolveTarget(numbered, { deviceId: 4711 }), { deviceId: '4711' });
    assert.equal(
      codeOf(() => namedTarget({ deviceId: Number.NaN })),
      'InvalidDeviceId',
    );
  });

  it('an invalid id is echoed, cut to 40 characters, with the characters IoT Hub allows', () => {
    const messageOf = (fn: () => unknown): string => {
      try {
        fn();
      } catch (err) {
        return (err as Error).message;
      }
      return 'no error';
    };
    assert.match(
      messageOf(() => namedTarget({ deviceId: 'has space' })),
      /"has space".*up to 128 ASCII letters, digits and - \. \+ % _ # \* \? ! \( \) , : = @ \$ '/,
    );
    const long = `${'x'.repeat(39)} ${'y'.repeat(200)}`;
    const said = messageOf(() => namedTarget({ deviceId: long }));
    assert.ok(said.includes(`"${'x'.repeat(39)} …"`), said);
    assert.ok(!said.includes('yy'), 'no more than 40 characters of the id');
    assert.match(
      messageOf(() => namedTarget({ deviceId: 'ok', moduleId: 'a/b' })),
      /module id "a\/b"/,
    );
    assert.match(
      messageOf(() => namedTarget({ deviceId: { id: 1 } })),
      /a value of type object/,
    );
  });

  it('service and Event Hubs identities cannot act for a device', () => {
    assert.equal(
      codeOf(() => resolveTarget({ kind: 'service', host: 'h', policy: 'p', key: 'k' }, { deviceId: 'd' })),
      'WrongRole',
    );
    assert.equal(
      codeOf(() => resolveTarget({ kind: 'eventhub', host: 'h', policy: 'p', key: 'k', entityPath: 'e' } as Identity, { deviceId: 'd' })),
      'WrongRole',
    );
  });

  it('addresses encode the ids once', () => {
    assert.equal(deviceAddress({ deviceId: 'pump-1' }, 'events'), '/devices/pump-1/messages/events');
    assert.equal(deviceAddress({ deviceId: 'a#b', moduleId: 'm?' }, 'devicebound'), '/devices/a%23b/modules/m%3F/messages/devicebound');
    assert.equal(targetName({ deviceId: 'd', moduleId: 'm' }), 'd/m');
  });
});

describe('cloud-to-device msg fields', () => {
  it('carries deliveryCount and enqueuedTime from the hub annotations', () => {
    const enqueued = new Date('2025-01-02T03:04:05.678Z');
    const fields = fromC2dMessage(
      {
        message_id: 'x',
        body: rhea.message.data_section(Buffer.from('{"a":1}')),
        message_annotations: { 'iothub-deliverycount': 3, 'iothub-enqueuedtime': enqueued, 'x-opt-sequence-number': 7 },
      } as rhea.Message,
      'auto',
    );
    assert.deepEqual(fields.payload, { a: 1 });
    assert.equal(fields.deliveryCount, 3);
    assert.equal(fields.enqueuedTime, enqueued.toISOString());
    assert.deepEqual(fields.systemProperties, { 'iothub-deliverycount': 3, 'iothub-enqueuedtime': enqueued.toISOString(), 'x-opt-sequence-number': 7 });
  });
});

describe('outgoing AMQP properties', () => {
  it('takes a Buffer user id as bytes and every other properties-section field', () => {
    const out = toAmqpMessage(
      { payload: 'x', userId: Buffer.from([0, 1, 2]), subject: 's', replyTo: 'r', groupId: 'g', groupSequence: 9, replyToGroupId: 'rg' },
      'd2c',
    );
    const m = out.message as rhea.Message & { user_id?: Buffer };
    assert.deepEqual(m.user_id, Buffer.from([0, 1, 2]));
    assert.deepEqual([m.subject, m.reply_to, m.group_id, m.group_sequence, m.reply_to_group_id], ['s', 'r', 'g', 9, 'rg']);
    const back = fromC2dMessage(m, 'string');
    assert.deepEqual([back.subject, back.replyTo, back.groupId, back.groupSequence, back.replyToGroupId], ['s', 'r', 'g', 9, 'rg']);
  });

  it('counts the new fields toward the size limit', () => {
    assert.equal(
      codeOf(() => toAmqpMessage({ payload: 'x'.repeat(256 * 1024 - 4), subject: 'abcdefgh' }, 'd2c')),
      'MessageTooLarge',
    );
  });
});
