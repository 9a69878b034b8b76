import { strict as assert } from 'node:assert';
import { makeSasToken } from '../../src/iothub/sas';
import { parseAddress } from '../../src/simulator/addresses';
import { AuthError, ConnectionAuth, grantFromToken, requirementFor, type Grant, type Requirement, type TokenContext } from '../../src/simulator/auth';
import { DEFAULT_KEYS, Registry } from '../../src/simulator/registry';

const NOW = 1_800_000_000_000;
const SE = NOW / 1000 + 3600;
const ENTITY = 'devhub';
const KEY_D1 = Buffer.from('device-one-primary-key-000000000').toString('base64');
const KEY_D1_2 = Buffer.from('device-one-secondary-key-0000000').toString('base64');
const KEY_M1 = Buffer.from('module-one-primary-key-000000000').toString('base64');
const KEY_D2 = Buffer.from('device-two-primary-key-000000000').toString('base64');

function context(autoRegister = false): TokenContext {
  const registry = new Registry({ autoRegister });
  registry.addDevice('d1', { primaryKey: KEY_D1, secondaryKey: KEY_D1_2 });
  registry.addModule('d1', 'm1', { primaryKey: KEY_M1 });
  registry.addDevice('d2', { primaryKey: KEY_D2 });
  return { registry, hosts: ['localhost', '127.0.0.1'], entityName: ENTITY, now: NOW };
}

function token(resource: string, key: string, keyName?: string, expiry = SE, encoding: 'base64' | 'text' = 'base64'): string {
  return makeSasToken(keyName === undefined ? { resource, key, expiry, encoding } : { resource, key, expiry, keyName, encoding });
}

function authError(text: string, ctx: TokenContext): string {
  try {
    grantFromToken(text, ctx);
  } catch (err) {
    assert.ok(err instanceof AuthError, String(err));
    return err.message;
  }
  assert.fail('token was accepted');
}

function req(address: string): Requirement {
  const r = requirementFor(parseAddress(address, ENTITY));
  assert.ok(r, `no requirement for ${address}`);
  return r;
}

function authWith(...grants: Grant[]): ConnectionAuth {
  const auth = new ConnectionAuth(100);
  for (const g of grants) auth.add(g);
  return auth;
}

const D1_EVENTS = '/devices/d1/messages/events';
const D1_C2D = '/devices/d1/messages/devicebound';
const D2_EVENTS = '/devices/d2/messages/events';
const M1_EVENTS = '/devices/d1/modules/m1/messages/events';
const DEVICEBOUND = '/messages/devicebound';
const FEEDBACK = '/messages/serviceBound/feedback';

describe('auth: grantFromToken', () => {
  it('a hub-scope policy token grants the policy rights over everything', () => {
    const ctx = context();
    const grant = grantFromToken(token('localhost', DEFAULT_KEYS.iothubowner, 'iothubowner'), ctx);
    assert.deepEqual(grant.scope, []);
    assert.deepEqual([...grant.rights].sort(), ['DeviceConnect', 'RegistryRead', 'RegistryWrite', 'ServiceConnect']);
    assert.deepEqual(grant.signer, { type: 'policy', name: 'iothubowner' });
    assert.equal(grant.expiresAt, SE * 1000);
    assert.equal(grant.eventHub, false);
  });

  it('a device key token (primary or secondary) grants DeviceConnect for that device', () => {
    const ctx = context();
    for (const key of [KEY_D1, KEY_D1_2]) {
      const grant = grantFromToken(token('localhost/devices/d1', key), ctx);
      assert.deepEqual(grant.scope, ['devices', 'd1']);
      assert.deepEqual([...grant.rights], ['DeviceConnect']);
      assert.deepEqual(grant.signer, { type: 'device', deviceId: 'd1' });
    }
  });

  it('a module key token names the module', () => {
    const grant = grantFromToken(token('localhost/devices/d1/modules/m1', KEY_M1), context());
    assert.deepEqual(grant.signer, { type: 'device', deviceId: 'd1', moduleId: 'm1' });
    assert.deepEqual(grant.scope, ['devices', 'd1', 'modules', 'm1']);
  });

  it('a policy token scoped to a device keeps that scope, case-folding fixed words only', () => {
    const grant = grantFromToken(token('LOCALHOST/Devices/MyDev', DEFAULT_KEYS.device, 'device'), context(true));
    assert.deepEqual(grant.scope, ['devices', 'MyDev']);
    assert.deepEqual(grant.signer, { type: 'policy', name: 'device' });
  });

  it('refuses expired tokens (se at or before now)', () => {
    const ctx = context();
    assert.equal(authError(token('localhost/devices/d1', KEY_D1, undefined, NOW / 1000), ctx), 'token expired');
    assert.equal(authError(token('localhost', DEFAULT_KEYS.service, 'service', NOW / 1000 - 100), ctx), 'token expired');
    assert.equal(grantFromToken(token('localhost/devices/d1', KEY_D1, undefined, NOW / 1000 + 1), ctx).expiresAt, NOW + 1000);
  });

  it('refuses a wrong key, an unknown policy, another host, a bad shape', () => {
    const ctx = context();
    assert.equal(authError(token('localhost/devices/d1', KEY_D2), ctx), 'signature does not match');
    assert.equal(authError(token('localhost/devices/d1/modules/m1', KEY_D1), ctx), 'signature does not match');
    assert.equal(authError(token('localhost', DEFAULT_KEYS.service, 'iothubowner'), ctx), 'signature does not match');
    assert.equal(authError(token('localhost', DEFAULT_KEYS.service, 'nosuchpolicy'), ctx), 'unknown policy');
    assert.equal(authError(token('otherhub.azure-devices.net/devices/d1', KEY_D1), ctx), 'token is for another host');
    assert.equal(authError(token('localhost/messages/events', KEY_D1), ctx), 'a token without a policy must be for devices/<id>');
    assert.equal(authError('SharedAccessSignature sr=localhost&se=1', ctx), 'token has no "sig"');
    assert.equal(authError('Bearer xyz', ctx), 'token does not start with "SharedAccessSignature"');
  });

  it('a device IoT Hub token is signed with the base64-decoded key, never the key text', () => {
    const ctx = context();
    assert.equal(authError(token('localhost/devices/d1', KEY_D1, undefined, SE, 'text'), ctx), 'signature does not match');
    assert.equal(authError(token('localhost', DEFAULT_KEYS.service, 'service', SE, 'text'), ctx), 'signature does not match');
  });

  it("unknown device: refused without autoRegister (404, in the hub's words, for device keys and policies alike); registered with it, default key only", () => {
    const off = context(false);
    const refused = (text: string): AuthError => {
      try {
        grantFromToken(text, off);
      } catch (err) {
        assert.ok(err instanceof AuthError);
        return err;
      }
      assert.fail('token was accepted');
    };
    const byKey = refused(token('localhost/devices/newdev', DEFAULT_KEYS.deviceDefault));
    assert.equal(byKey.status, 404);
    assert.match(byKey.message, /^Device newdev at IotHub \S+ not registered$/);
    const byPolicy = refused(token('localhost/devices/newdev', DEFAULT_KEYS.iothubowner, 'iothubowner'));
    assert.equal(byPolicy.status, 404);
    assert.equal(refused(token('localhost/devices/d1/modules/nomod', DEFAULT_KEYS.iothubowner, 'iothubowner')).status, 404);
    assert.equal(off.registry.getDevice('newdev'), undefined);
    // A hub-level policy token names no device: it is not refused for one.
    assert.equal(grantFromToken(token('localhost', DEFAULT_KEYS.iothubowner, 'iothubowner'), off).signer.type, 'policy');

    const on = context(true);
    assert.equal(authError(token('localhost/devices/other', KEY_D2), on), 'signature does not match');
    assert.equal(on.registry.getDevice('other'), undefined);
    const grant = grantFromToken(token('localhost/devices/newdev', DEFAULT_KEYS.deviceDefault), on);
    assert.deepEqual(grant.signer, { type: 'device', deviceId: 'newdev' });
    assert.equal(on.registry.getDevice('newdev')?.primaryKey, DEFAULT_KEYS.deviceDefault);
    grantFromToken(token('localhost/devices/newdev/modules/newmod', DEFAULT_KEYS.deviceDefault), on);
    assert.ok(on.registry.getDevice('newdev')?.modules.has('newmod'));
  });

  it('Event Hubs tokens: sb:// audience, key signed as TEXT, policy required', () => {
    const ctx = context();
    const audience = `sb://localhost/${ENTITY}/ConsumerGroups/$Default/Partitions/0`;
    const grant = grantFromToken(token(audience, DEFAULT_KEYS.service, 'service', SE, 'text'), ctx);
    assert.equal(grant.eventHub, true);
    assert.deepEqual(grant.scope, ['devhub', 'consumergroups', '$default', 'partitions', '0']);
    // The IoT flavour of their token provider decodes the key first: accepted on this surface too.
    assert.equal(grantFromToken(token(audience, DEFAULT_KEYS.service, 'service'), ctx).eventHub, true);
    assert.equal(authError(token(audience, KEY_D1, 'service', SE, 'text'), ctx), 'signature does not match');
    assert.equal(authError(token(audience, DEFAULT_KEYS.service, undefined, SE, 'text'), ctx), 'Event Hubs tokens need a policy name (skn)');
    // A port in the audience host is fine.
    assert.equal(grantFromToken(token(`sb://localhost:5672/${ENTITY}`, DEFAULT_KEYS.service, 'service', SE, 'text'), ctx).eventHub, true);
  });
});

describe('auth: requirementFor and ConnectionAuth.allows', () => {
  const ctx = context();
  const d1 = grantFromToken(token('localhost/devices/d1', KEY_D1), ctx);
  const m1 = grantFromToken(token('localhost/devices/d1/modules/m1', KEY_M1), ctx);
  const service = grantFromToken(token('localhost', DEFAULT_KEYS.service, 'service'), ctx);
  const owner = grantFromToken(token('localhost', DEFAULT_KEYS.iothubowner, 'iothubowner'), ctx);
  const devicePolicyD1 = grantFromToken(token('localhost/devices/d1', DEFAULT_KEYS.device, 'device'), ctx);

  it('requirements name the path, right and device', () => {
    assert.deepEqual(req(M1_EVENTS), {
      path: ['devices', 'd1', 'modules', 'm1', 'messages', 'events'],
      right: 'DeviceConnect',
      eventHub: false,
      device: { deviceId: 'd1', moduleId: 'm1' },
    });
    assert.deepEqual(req(FEEDBACK), { path: ['messages', 'servicebound', 'feedback'], right: 'ServiceConnect', eventHub: false });
    assert.deepEqual(req('devhub/ConsumerGroups/CG/Partitions/2'), {
      path: ['devhub', 'consumergroups', 'cg', 'partitions', '2'],
      right: 'ServiceConnect',
      eventHub: true,
    });
    assert.equal(requirementFor(parseAddress('$cbs', ENTITY)), undefined);
    assert.deepEqual(requirementFor(parseAddress('/devices/d1/twin', ENTITY)), {
      path: ['devices', 'd1', 'twin'],
      right: 'DeviceConnect',
      eventHub: false,
      device: { deviceId: 'd1' },
    });
    assert.deepEqual(requirementFor(parseAddress('/devices/d1/modules/m/methods/devicebound', ENTITY))?.path, [
      'devices',
      'd1',
      'modules',
      'm',
      'methods',
      'devicebound',
    ]);
    assert.equal(requirementFor(parseAddress('/devices/d1/twin/x', ENTITY)), undefined);
  });

  it("device A's token does not allow device B", () => {
    const auth = authWith(d1);
    assert.equal(auth.allows(req(D1_EVENTS), NOW), true);
    assert.equal(auth.allows(req(D1_C2D), NOW), true);
    assert.equal(auth.allows(req(D2_EVENTS), NOW), false);
    assert.equal(auth.allows(req('/devices/D1/messages/events'), NOW), false);
  });

  it("a device token does not allow its module's address, nor the reverse", () => {
    assert.equal(authWith(d1).allows(req(M1_EVENTS), NOW), false);
    assert.equal(authWith(m1).allows(req(M1_EVENTS), NOW), true);
    assert.equal(authWith(m1).allows(req(D1_EVENTS), NOW), false);
  });

  it('a ServiceConnect policy allows service paths, not device paths', () => {
    const auth = authWith(service);
    assert.equal(auth.allows(req(DEVICEBOUND), NOW), true);
    assert.equal(auth.allows(req(FEEDBACK), NOW), true);
    assert.equal(auth.allows(req('/messages/events/ConsumerGroups/$Default/Partitions/0'), NOW), true);
    assert.equal(auth.allows(req(D1_EVENTS), NOW), false);
    assert.equal(auth.allows(req(D1_C2D), NOW), false);
  });

  it('iothubowner allows both device and service paths', () => {
    const auth = authWith(owner);
    for (const a of [D1_EVENTS, D2_EVENTS, M1_EVENTS, DEVICEBOUND, FEEDBACK]) assert.equal(auth.allows(req(a), NOW), true, a);
  });

  it('a device-scoped policy covers that device by whole segments only', () => {
    const auth = authWith(devicePolicyD1);
    assert.equal(auth.allows(req(D1_EVENTS), NOW), true);
    assert.equal(auth.allows(req(M1_EVENTS), NOW), true);
    assert.equal(auth.allows(req('/devices/d10/messages/events'), NOW), false);
    assert.equal(auth.allows(req(D2_EVENTS), NOW), false);
    assert.equal(auth.allows(req(FEEDBACK), NOW), false);
  });

  it('Event Hubs grants only open Event Hubs paths within their scope', () => {
    const eh0 = grantFromToken(token(`sb://localhost/${ENTITY}/ConsumerGroups/$Default/Partitions/0`, DEFAULT_KEYS.service, 'service', SE, 'text'), ctx);
    const auth = authWith(eh0);
    assert.equal(auth.allows(req(`${ENTITY}/ConsumerGroups/$Default/Partitions/0`), NOW), true);
    assert.equal(auth.allows(req(`${ENTITY}/ConsumerGroups/$Default/Partitions/1`), NOW), false);
    assert.equal(auth.allows(req('/messages/events/ConsumerGroups/$Default/Partitions/0'), NOW), false);
    assert.equal(authWith(service).allows(req(`${ENTITY}/ConsumerGroups/$Default/Partitions/0`), NOW), false);
  });

  it('grants lapse at their expiry', () => {
    const auth = authWith(d1);
    assert.equal(auth.allows(req(D1_EVENTS), d1.expiresAt - 1), true);
    assert.equal(auth.allows(req(D1_EVENTS), d1.expiresAt), false);
  });

  it('a renewal for the same scope replaces the grant; another scope adds one', () => {
    const c = context();
    const auth = new ConnectionAuth(2);
    auth.add(grantFromToken(token('localhost/devices/d1', KEY_D1, undefined, SE), c));
    const later = grantFromToken(token('localhost/devices/d1', KEY_D1, undefined, SE + 3600), c);
    auth.add(later);
    assert.equal(auth.size, 1);
    assert.equal(auth.allows(req(D1_EVENTS), SE * 1000 + 10), true);
    auth.add(grantFromToken(token('localhost/devices/d2', KEY_D2), c));
    assert.equal(auth.size, 2);
    assert.throws(
      () => auth.add(grantFromToken(token('localhost', DEFAULT_KEYS.service, 'service'), c)),
      (err: unknown) =>
        err instanceof AuthError && err.status === 403 && /^The maximum number of tokens per connection \(2\) has been reached$/.test(err.message),
    );
    auth.add(grantFromToken(token('localhost/devices/d2', KEY_D2, undefined, SE + 60), c));
    assert.equal(auth.size, 2);
  });

  it('expireAll makes every grant lapse now', () => {
    const c = context();
    const auth = authWith(
      grantFromToken(token('localhost/devices/d1', KEY_D1), c),
      grantFromToken(token('localhost', DEFAULT_KEYS.iothubowner, 'iothubowner'), c),
    );
    assert.equal(auth.allows(req(D1_EVENTS), NOW), true);
    auth.expireAll(NOW);
    assert.equal(auth.allows(req(D1_EVENTS), NOW), false);
    assert.equal(auth.allows(req(FEEDBACK), NOW), false);
    assert.equal(auth.size, 2);
  });

  it('a device id containing "%" is decoded once', () => {
    const c = context(false);
    c.registry.addDevice('a%41', { primaryKey: KEY_D2 });
    const grant = grantFromToken(token('localhost/devices/a%41', KEY_D2), c);
    assert.deepEqual(grant.signer, { type: 'device', deviceId: 'a%41' });
    assert.equal(authWith(grant).allows(req('/devices/a%2541/messages/events'), NOW), true);
  });
});
