import { strict as assert } from 'node:assert';
import { addressSegments, parseAddress, type Address } from '../../src/simulator/addresses';

const ENTITY = 'devhub';
const parse = (a: string | undefined): Address => parseAddress(a, ENTITY);

describe('addresses', () => {
  it('addressSegments strips scheme, host and port and URL-decodes each segment', () => {
    assert.deepEqual(addressSegments('amqps://host:5671/devices/d%231/messages/events'), ['devices', 'd#1', 'messages', 'events']);
    assert.deepEqual(addressSegments('  //devices//d%2F1/ '), ['devices', 'd/1']);
    assert.deepEqual(addressSegments('/devices/bad%zz/x'), ['devices', 'bad%zz', 'x']);
    assert.deepEqual(addressSegments('amqps://host:5671'), []);
  });

  it('$cbs', () => {
    assert.deepEqual(parse('$cbs'), { kind: 'cbs' });
    assert.deepEqual(parse('/$CBS'), { kind: 'cbs' });
  });

  it('device telemetry, relative with and without the leading slash', () => {
    assert.deepEqual(parse('/devices/d1/messages/events'), { kind: 'd2c', deviceId: 'd1' });
    assert.deepEqual(parse('devices/d1/messages/events'), { kind: 'd2c', deviceId: 'd1' });
  });

  it('absolute URIs as C# and C send them, with an encoded id', () => {
    assert.deepEqual(parse('amqps://host:5671/devices/d%231/messages/events'), { kind: 'd2c', deviceId: 'd#1' });
    assert.deepEqual(parse('amqps://myhub.azure-devices.net/devices/d1/messages/devicebound'), { kind: 'c2d', deviceId: 'd1' });
    assert.deepEqual(parse('amqps://host:5671/messages/deviceBound'), { kind: 'devicebound' });
    assert.deepEqual(parse('amqps://host/messages/devicebound'), { kind: 'devicebound' });
  });

  it('fixed words ignore case, ids keep theirs', () => {
    assert.deepEqual(parse('/DEVICES/MyDevice/Messages/DeviceBound'), { kind: 'c2d', deviceId: 'MyDevice' });
    assert.deepEqual(parse('/devices/MyDevice/messages/Events'), { kind: 'd2c', deviceId: 'MyDevice' });
    assert.deepEqual(parse('/messages/serviceBound/feedback'), { kind: 'feedback' });
    assert.deepEqual(parse('/messages/servicebound/Feedback'), { kind: 'feedback' });
    assert.deepEqual(parse('/messages/serviceBound/fileNotifications'), { kind: 'filenotifications' });
  });

  it('module paths', () => {
    assert.deepEqual(parse('/devices/d1/modules/m1/messages/events'), { kind: 'd2c', deviceId: 'd1', moduleId: 'm1' });
    assert.deepEqual(parse('amqps://h:5671/devices/d1/Modules/M%201/messages/deviceBound'), { kind: 'c2d', deviceId: 'd1', moduleId: 'M 1' });
  });

  it('built-in endpoint partition and $management', () => {
    assert.deepEqual(parse('/messages/events/ConsumerGroups/$Default/Partitions/3'), {
      kind: 'builtin-partition',
      consumerGroup: '$Default',
      partition: '3',
    });
    assert.deepEqual(parse('amqps://h:5671/messages/events/consumergroups/cg1/partitions/0'), {
      kind: 'builtin-partition',
      consumerGroup: 'cg1',
      partition: '0',
    });
    assert.deepEqual(parse('/messages/events/$management'), { kind: 'builtin-management' });
  });

  it('Event Hubs paths under the entity name', () => {
    assert.deepEqual(parse('devhub/ConsumerGroups/$default/Partitions/1'), {
      kind: 'eh-partition',
      entity: 'devhub',
      consumerGroup: '$default',
      partition: '1',
    });
    assert.deepEqual(parse('amqps://localhost:5671/devhub/$management'), { kind: 'eh-management', entity: 'devhub' });
    assert.deepEqual(parse('DevHub/$management'), { kind: 'eh-management', entity: 'DevHub' });
  });

  it('a bare $management is the Event Hubs management link', () => {
    assert.deepEqual(parse('$management'), { kind: 'eh-management', entity: ENTITY });
  });

  it('method and twin links of devices and modules', () => {
    assert.deepEqual(parse('/devices/d1/methods/devicebound'), { kind: 'methods', deviceId: 'd1' });
    assert.deepEqual(parse('/devices/d1/modules/m%231/methods/deviceBound'), { kind: 'methods', deviceId: 'd1', moduleId: 'm#1' });
    assert.deepEqual(parse('amqps://h/devices/d1/twin'), { kind: 'twin', deviceId: 'd1' });
    assert.deepEqual(parse('/devices/d1/modules/m1/twin'), { kind: 'twin', deviceId: 'd1', moduleId: 'm1' });
  });

  it('anything else is unknown, with the decoded path', () => {
    assert.deepEqual(parse(undefined), { kind: 'unknown', path: '' });
    assert.deepEqual(parse(''), { kind: 'unknown', path: '' });
    assert.deepEqual(parse('/devices/d1/twin/extra'), { kind: 'unknown', path: 'devices/d1/twin/extra' });
    assert.deepEqual(parse('/devices/d1/methods'), { kind: 'unknown', path: 'devices/d1/methods' });
    assert.deepEqual(parse('/devices/d1/messages/events/extra'), { kind: 'unknown', path: 'devices/d1/messages/events/extra' });
    assert.deepEqual(parse('/devices/d1/modules/m1/messages'), { kind: 'unknown', path: 'devices/d1/modules/m1/messages' });
    assert.deepEqual(parse('otherhub/$management'), { kind: 'unknown', path: 'otherhub/$management' });
    assert.deepEqual(parse('/messages/events/$management/x'), { kind: 'unknown', path: 'messages/events/$management/x' });
    assert.deepEqual(parse('/messages/serviceBound'), { kind: 'unknown', path: 'messages/serviceBound' });
  });

  it('ids that look like fixed words are still ids', () => {
    assert.deepEqual(parse('/devices/modules/messages/events'), { kind: 'd2c', deviceId: 'modules' });
    assert.deepEqual(parse('/devices/messages/modules/events/messages/devicebound'), { kind: 'c2d', deviceId: 'messages', moduleId: 'events' });
  });
});
