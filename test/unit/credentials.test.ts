/**
 * Which token each identity makes for which scope, checked two ways: against the SAS rules written out
 * (audience, key encoding, expiry) and against the simulator's own grantFromToken with a registry that
 * holds the right keys, which is where client and hub must agree.
 */
import { strict as assert } from 'node:assert';
import {
  parseConnectionString,
  type DeviceIdentity,
  type EventHubIdentity,
  type GatewayIdentity,
  type Identity,
  type ServiceIdentity,
} from '../../src/iothub/connection-string';
import { checkScope, hostOf, makeToken, resourceFor, scopeKey, type Scope } from '../../src/iothub/credentials';
import { HubError } from '../../src/iothub/errors';
import { makeSasToken, parseSasToken, verifySasSignature } from '../../src/iothub/sas';
import { parseAddress } from '../../src/simulator/addresses';
import { AuthError, ConnectionAuth, grantFromToken, requirementFor, type Grant, type TokenContext } from '../../src/simulator/auth';
import { DEFAULT_KEYS, Registry } from '../../src/simulator/registry';

const HOST = 'myhub.azure-devices.net';
const ENTITY = 'myhub';
const NOW = 1_800_000_000_123;
const NOW_S = Math.floor(NOW / 1000);
const LIFETIME = 3600;

const KEY_D1 = Buffer.from('credentials-test-device-one-key!').toString('base64');
const KEY_D2 = Buffer.from('credentials-test-device-two-key!').toString('base64');
const KEY_M1 = Buffer.from('credentials-test-module-one-key!').toString('base64');
const KEY_ODD = Buffer.from('credentials-test-odd-device-key!').toString('base64');
/** A device id using characters that need percent-encoding in a resource URI. */
const ODD_ID = "line+1_%(a)#b*c!d'e@f$g=h:i,j";

function registry(): Registry {
  const r = new Registry({ autoRegister: false });
  r.addDevice('d1', { primaryKey: KEY_D1 });
  r.addDevice('d2', { primaryKey: KEY_D2 });
  r.addModule('d1', 'm1', { primaryKey: KEY_M1 });
  r.addDevice(ODD_ID, { primaryKey: KEY_ODD });
  return r;
}

function context(now = NOW): TokenContext {
  return { registry: registry(), hosts: [HOST, 'localhost'], entityName: ENTITY, now };
}

const service = (policy = 'service'): ServiceIdentity => ({ kind: 'service', host: HOST, policy, key: DEFAULT_KEYS[policy as keyof typeof DEFAULT_KEYS] });
const gateway = (policy = 'device'): GatewayIdentity => ({ kind: 'gateway', host: HOST, policy, key: DEFAULT_KEYS[policy as keyof typeof DEFAULT_KEYS] });
const device = (deviceId = 'd1', key = KEY_D1): DeviceIdentity => ({ kind: 'device', host: HOST, deviceId, key });
const moduleIdentity = (): DeviceIdentity => ({ kind: 'device', host: HOST, deviceId: 'd1', moduleId: 'm1', key: KEY_M1 });
const eventHub = (): EventHubIdentity => ({
  kind: 'eventhub',
  host: 'localhost:5672',
  entityPath: ENTITY,
  policy: 'iothubowner',
  key: DEFAULT_KEYS.iothubowner,
  emulator: true,
});

function grant(token: string, ctx = context()): Grant {
  return grantFromToken(token, ctx);
}

function allows(g: Grant, address: string, now = NOW): boolean {
  const requirement = requirementFor(parseAddress(address, ENTITY));
  assert.ok(requirement, `no requirement for ${address}`);
  const auth = new ConnectionAuth(10);
  auth.add(g);
  return auth.allows(requirement, now);
}

function mismatch(identity: Identity, scope: Scope): HubError {
  try {
    checkScope(identity, scope);
  } catch (err) {
    assert.ok(err instanceof HubError, String(err));
    assert.equal(err.code, 'IdentityMismatch');
    assert.equal(err.retryable, false);
    return err;
  }
  assert.fail(`checkScope let ${identity.kind} act for ${JSON.stringify(scope)}`);
}

describe('credentials: resourceFor', () => {
  it('a service identity signs for the hub host', () => {
    assert.equal(resourceFor(service(), {}), HOST);
  });

  it('a gateway speaks for devices and modules under the hub host', () => {
    assert.equal(resourceFor(gateway(), { deviceId: 'd1' }), `${HOST}/devices/d1`);
    assert.equal(resourceFor(gateway(), { deviceId: 'd1', moduleId: 'm1' }), `${HOST}/devices/d1/modules/m1`);
    assert.equal(resourceFor(gateway(), {}), HOST);
  });

  it('a device and a module sign for themselves', () => {
    assert.equal(resourceFor(device(), { deviceId: 'd1' }), `${HOST}/devices/d1`);
    assert.equal(resourceFor(moduleIdentity(), { deviceId: 'd1', moduleId: 'm1' }), `${HOST}/devices/d1/modules/m1`);
  });

  it('an Event Hubs identity signs for sb://<namespace>/<entity> whatever the scope', () => {
    assert.equal(resourceFor(eventHub(), {}), `sb://localhost:5672/${ENTITY}`);
  });

  it('ids are left unencoded (the token encodes the whole resource once)', () => {
    assert.equal(resourceFor(gateway(), { deviceId: 'a b%2F' }), `${HOST}/devices/a b%2F`);
  });
});

describe('credentials: scopeKey and hostOf', () => {
  it('keys the hub, each device and each module apart', () => {
    const keys = [scopeKey({}), scopeKey({ deviceId: 'd1' }), scopeKey({ deviceId: 'd1', moduleId: 'm1' }), scopeKey({ deviceId: 'd2' })];
    assert.equal(new Set(keys).size, keys.length);
    assert.equal(scopeKey({ deviceId: 'd1' }), scopeKey({ deviceId: 'd1' }));
  });

  it('strips a port from the host', () => {
    assert.equal(hostOf({ ...eventHub(), host: 'localhost:5672' }), 'localhost');
    assert.equal(hostOf(service()), HOST);
  });
});

describe('credentials: makeToken', () => {
  it('service: a hub-level token signed with the base64 policy key, named by the policy, accepted by the hub', () => {
    const token = makeToken(service(), {}, LIFETIME, NOW);
    assert.equal(token.audience, HOST);
    assert.equal(token.renewable, true);
    assert.equal(token.expiresAt, (NOW_S + LIFETIME) * 1000);
    const parsed = parseSasToken(token.token);
    assert.equal(parsed.resource, HOST);
    assert.equal(parsed.keyName, 'service');
    assert.equal(parsed.expiry, NOW_S + LIFETIME);
    assert.equal(verifySasSignature(parsed, DEFAULT_KEYS.service, 'base64'), true);
    assert.equal(verifySasSignature(parsed, DEFAULT_KEYS.service, 'text'), false);

    const g = grant(token.token);
    assert.deepEqual(g.scope, []);
    assert.deepEqual(g.signer, { type: 'policy', name: 'service' });
    assert.equal(g.eventHub, false);
    assert.equal(g.expiresAt, token.expiresAt);
    assert.ok(allows(g, '/messages/devicebound'));
    assert.ok(allows(g, '/messages/serviceBound/feedback'));
    assert.ok(!allows(g, '/devices/d1/messages/events'), 'ServiceConnect does not speak for devices');
  });

  it('gateway, device scope: a policy-signed token for that device only, accepted by the hub', () => {
    const token = makeToken(gateway(), { deviceId: 'd1' }, LIFETIME, NOW);
    assert.equal(token.audience, `${HOST}/devices/d1`);
    assert.equal(token.renewable, true);
    const parsed = parseSasToken(token.token);
    assert.equal(parsed.rawResource, encodeURIComponent(`${HOST}/devices/d1`));
    assert.equal(parsed.keyName, 'device');
    assert.ok(verifySasSignature(parsed, DEFAULT_KEYS.device, 'base64'));

    const g = grant(token.token);
    assert.deepEqual(g.scope, ['devices', 'd1']);
    assert.deepEqual(g.signer, { type: 'policy', name: 'device' });
    assert.ok(allows(g, '/devices/d1/messages/events'));
    assert.ok(allows(g, '/devices/d1/messages/devicebound'));
    assert.ok(allows(g, '/devices/d1/modules/m1/messages/events'), 'a device scope covers its modules for a policy');
    assert.ok(!allows(g, '/devices/d2/messages/events'), 'one device token does not cover another device');
    assert.ok(!allows(g, '/messages/devicebound'));
  });

  it('gateway, module scope: a policy-signed token for that module only, accepted by the hub', () => {
    const token = makeToken(gateway(), { deviceId: 'd1', moduleId: 'm1' }, LIFETIME, NOW);
    assert.equal(token.audience, `${HOST}/devices/d1/modules/m1`);
    const g = grant(token.token);
    assert.deepEqual(g.scope, ['devices', 'd1', 'modules', 'm1']);
    assert.ok(allows(g, '/devices/d1/modules/m1/messages/events'));
    assert.ok(!allows(g, '/devices/d1/messages/events'), 'a module token does not speak for its device');
  });

  it('gateway with a policy the hub does not know, or the wrong key, is refused by the hub', () => {
    const unknown = makeToken({ ...gateway(), policy: 'nobody' }, { deviceId: 'd1' }, LIFETIME, NOW);
    assert.throws(
      () => grant(unknown.token),
      (err: Error) => err instanceof AuthError && /unknown policy/.test(err.message),
    );
    const wrongKey = makeToken({ ...gateway(), key: DEFAULT_KEYS.service }, { deviceId: 'd1' }, LIFETIME, NOW);
    assert.throws(
      () => grant(wrongKey.token),
      (err: Error) => err instanceof AuthError && /signature/.test(err.message),
    );
  });

  it('device key: no key name, signed with the base64 device key, accepted as that device only', () => {
    const token = makeToken(device(), { deviceId: 'd1' }, LIFETIME, NOW);
    assert.equal(token.audience, `${HOST}/devices/d1`);
    assert.equal(token.renewable, true);
    assert.equal(token.expiresAt, (NOW_S + LIFETIME) * 1000);
    const parsed = parseSasToken(token.token);
    assert.equal(parsed.keyName, undefined);
    assert.ok(verifySasSignature(parsed, KEY_D1, 'base64'));
    assert.ok(!verifySasSignature(parsed, KEY_D2, 'base64'));

    const g = grant(token.token);
    assert.deepEqual(g.signer, { type: 'device', deviceId: 'd1' });
    assert.deepEqual([...g.rights], ['DeviceConnect']);
    assert.ok(allows(g, '/devices/d1/messages/events'));
    assert.ok(allows(g, '/devices/d1/messages/devicebound'));
    assert.ok(!allows(g, '/devices/d2/messages/events'));
    assert.ok(!allows(g, '/devices/d1/modules/m1/messages/events'), 'a device key does not speak for its modules');
  });

  it('device key: another device’s key is refused by the hub', () => {
    const token = makeToken(device('d1', KEY_D2), { deviceId: 'd1' }, LIFETIME, NOW);
    assert.throws(
      () => grant(token.token),
      (err: Error) => err instanceof AuthError && /signature/.test(err.message),
    );
  });

  it('module key: signed for devices/<id>/modules/<mid>, accepted as that module only', () => {
    const token = makeToken(moduleIdentity(), { deviceId: 'd1', moduleId: 'm1' }, LIFETIME, NOW);
    assert.equal(token.audience, `${HOST}/devices/d1/modules/m1`);
    const parsed = parseSasToken(token.token);
    assert.equal(parsed.keyName, undefined);
    assert.ok(verifySasSignature(parsed, KEY_M1, 'base64'));

    const g = grant(token.token);
    assert.deepEqual(g.signer, { type: 'device', deviceId: 'd1', moduleId: 'm1' });
    assert.ok(allows(g, '/devices/d1/modules/m1/messages/events'));
    assert.ok(!allows(g, '/devices/d1/messages/events'), 'a module key does not speak for its device');
  });

  it('a device id with characters that need encoding round-trips: the hub sees the id as given', () => {
    const id = ODD_ID;
    const token = makeToken(device(id, KEY_ODD), { deviceId: id }, LIFETIME, NOW);
    const parsed = parseSasToken(token.token);
    assert.equal(parsed.resource, `${HOST}/devices/${id}`);
    assert.match(parsed.rawResource, /^[A-Za-z0-9%._~-]+$/, 'every reserved character is percent-encoded in sr');
    const g = grant(token.token);
    assert.deepEqual(g.scope, ['devices', id]);
    assert.deepEqual(g.signer, { type: 'device', deviceId: id });
  });

  it('lifetime: whole seconds from now, at least one second', () => {
    assert.equal(makeToken(device(), { deviceId: 'd1' }, 10, NOW).expiresAt, (NOW_S + 10) * 1000);
    assert.equal(makeToken(device(), { deviceId: 'd1' }, 10.9, NOW).expiresAt, (NOW_S + 10) * 1000);
    assert.equal(makeToken(device(), { deviceId: 'd1' }, 0, NOW).expiresAt, (NOW_S + 1) * 1000);
    assert.equal(makeToken(device(), { deviceId: 'd1' }, -5, NOW).expiresAt, (NOW_S + 1) * 1000);
    const token = makeToken(service(), {}, 2, NOW);
    assert.equal(parseSasToken(token.token).expiry * 1000, token.expiresAt);
  });

  it('a token the hub accepts now is refused once it has run out', () => {
    const token = makeToken(device(), { deviceId: 'd1' }, 5, NOW);
    const g = grant(token.token, context(NOW + 4000));
    assert.ok(allows(g, '/devices/d1/messages/events', NOW + 4000));
    assert.ok(!allows(g, '/devices/d1/messages/events', token.expiresAt));
    assert.throws(
      () => grant(token.token, context(token.expiresAt)),
      (err: Error) => err instanceof AuthError && /expired/.test(err.message),
    );
  });

  it('device SAS: the given token as is, not renewable, expiry read from its se', () => {
    const se = NOW_S + 1234;
    const sas = makeSasToken({ resource: `${HOST}/devices/d1`, key: KEY_D1, expiry: se });
    const identity = parseConnectionString(`HostName=${HOST};DeviceId=d1;SharedAccessSignature=${sas}`);
    assert.equal(identity.kind, 'device');
    // The lifetime and the clock play no part: the expiry is the token's own.
    const token = makeToken(identity, { deviceId: 'd1' }, LIFETIME, NOW + 999_999);
    assert.equal(token.token, sas);
    assert.equal(token.renewable, false);
    assert.equal(token.expiresAt, se * 1000);
    assert.equal(token.audience, `${HOST}/devices/d1`);
    const g = grant(token.token);
    assert.deepEqual(g.signer, { type: 'device', deviceId: 'd1' });
    assert.equal(g.expiresAt, se * 1000);
    assert.ok(allows(g, '/devices/d1/messages/events'));
  });

  it('device SAS for a module keeps the module audience', () => {
    const se = NOW_S + 60;
    const sas = makeSasToken({ resource: `${HOST}/devices/d1/modules/m1`, key: KEY_M1, expiry: se });
    const identity = parseConnectionString(`HostName=${HOST};DeviceId=d1;ModuleId=m1;SharedAccessSignature=${sas}`);
    const token = makeToken(identity, { deviceId: 'd1', moduleId: 'm1' }, LIFETIME, NOW);
    assert.equal(token.audience, `${HOST}/devices/d1/modules/m1`);
    assert.equal(token.renewable, false);
    assert.equal(token.expiresAt, se * 1000);
    assert.deepEqual(grant(token.token).signer, { type: 'device', deviceId: 'd1', moduleId: 'm1' });
  });

  it('device SAS that cannot be read fails with InvalidToken and does not repeat the signature', () => {
    const secret = 'c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ%3D%3D';
    for (const sas of [
      `SharedAccessSignature sr=${HOST}%2Fdevices%2Fd1&sig=${secret}`,
      `SharedAccessSignature sr=${HOST}&sig=${secret}&se=soon`,
      'SharedAccessSignature nonsense',
    ]) {
      const identity: DeviceIdentity = { kind: 'device', host: HOST, deviceId: 'd1', sas };
      assert.throws(
        () => makeToken(identity, { deviceId: 'd1' }, LIFETIME, NOW),
        (err: Error) => err instanceof HubError && err.code === 'InvalidToken' && !err.message.includes(secret) && !err.message.includes('c2VjcmV0'),
        sas,
      );
    }
  });

  // An identity built in code (or a future x509 form) may carry neither; it must not retry forever.
  it('a device identity with neither key nor SAS fails with a HubError, not a TypeError', () => {
    const identity: DeviceIdentity = { kind: 'device', host: HOST, deviceId: 'd1' };
    assert.throws(
      () => makeToken(identity, { deviceId: 'd1' }, LIFETIME, NOW),
      (err: Error) => err instanceof HubError && err.retryable === false,
    );
  });

  it('Event Hubs: sb:// audience, key used as text, accepted on the hub’s Event Hubs surface', () => {
    const identity = eventHub();
    const token = makeToken(identity, {}, LIFETIME, NOW);
    assert.equal(token.audience, `sb://localhost:5672/${ENTITY}`);
    assert.equal(token.renewable, true);
    assert.equal(token.expiresAt, (NOW_S + LIFETIME) * 1000);
    const parsed = parseSasToken(token.token);
    assert.equal(parsed.resource, `sb://localhost:5672/${ENTITY}`);
    assert.equal(parsed.keyName, 'iothubowner');
    assert.equal(verifySasSignature(parsed, identity.key, 'text'), true, 'signed with the key string as UTF-8 text');
    assert.equal(verifySasSignature(parsed, identity.key, 'base64'), false, 'not with the decoded key');

    const g = grant(token.token);
    assert.equal(g.eventHub, true);
    assert.deepEqual(g.scope, [ENTITY]);
    assert.deepEqual(g.signer, { type: 'policy', name: 'iothubowner' });
    assert.ok(allows(g, `${ENTITY}/ConsumerGroups/$Default/Partitions/0`));
    assert.ok(allows(g, `${ENTITY}/$management`));
    assert.ok(!allows(g, '/messages/devicebound'), 'an Event Hubs token is not an IoT Hub token');
  });

  it('Event Hubs: the identity parsed from a connection string makes a token the hub accepts', () => {
    const text = `Endpoint=sb://localhost:5672/;SharedAccessKeyName=service;SharedAccessKey=${DEFAULT_KEYS.service};EntityPath=${ENTITY}`;
    const identity = parseConnectionString(text);
    assert.equal(identity.kind, 'eventhub');
    const token = makeToken(identity, {}, LIFETIME, NOW);
    const g = grant(token.token);
    assert.equal(g.eventHub, true);
    assert.ok(allows(g, `${ENTITY}/ConsumerGroups/$Default/Partitions/3`));
    // The text-encoded signature does not verify as an IoT Hub (base64) one.
    const wrong = makeToken({ ...(identity as EventHubIdentity), key: DEFAULT_KEYS.device }, {}, LIFETIME, NOW);
    assert.throws(() => grant(wrong.token), AuthError);
  });

  it('connection strings from the simulator’s format round-trip into tokens it accepts', () => {
    const ctx = context();
    const byString: Array<[Identity, Scope, string]> = [
      [parseConnectionString(`HostName=${HOST};SharedAccessKeyName=service;SharedAccessKey=${DEFAULT_KEYS.service}`), {}, '/messages/devicebound'],
      [
        parseConnectionString(`HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${DEFAULT_KEYS.iothubowner}`, { gatewayPolicy: true }),
        { deviceId: 'd2' },
        '/devices/d2/messages/events',
      ],
      [parseConnectionString(`HostName=${HOST};DeviceId=d2;SharedAccessKey=${KEY_D2}`), { deviceId: 'd2' }, '/devices/d2/messages/devicebound'],
      [
        parseConnectionString(`HostName=${HOST};DeviceId=d1;ModuleId=m1;SharedAccessKey=${KEY_M1}`),
        { deviceId: 'd1', moduleId: 'm1' },
        '/devices/d1/modules/m1/messages/events',
      ],
    ];
    for (const [identity, scope, address] of byString) {
      checkScope(identity, scope);
      const token = makeToken(identity, scope, 60, NOW);
      assert.ok(allows(grantFromToken(token.token, ctx), address), `${identity.kind} for ${address}`);
    }
  });
});

describe('credentials: checkScope', () => {
  it('lets a device act for itself and a module for itself', () => {
    checkScope(device(), { deviceId: 'd1' });
    checkScope(moduleIdentity(), { deviceId: 'd1', moduleId: 'm1' });
  });

  it('refuses a device acting for another device, naming both', () => {
    const err = mismatch(device(), { deviceId: 'd2' });
    assert.match(err.message, /d1/);
    assert.match(err.message, /d2/);
  });

  it('refuses a device acting for the service side', () => {
    const err = mismatch(device(), {});
    assert.match(err.message, /service side/);
  });

  it('refuses a device acting for one of its modules, and a module acting for its device or a sibling', () => {
    mismatch(device(), { deviceId: 'd1', moduleId: 'm1' });
    mismatch(moduleIdentity(), { deviceId: 'd1' });
    mismatch(moduleIdentity(), { deviceId: 'd1', moduleId: 'm2' });
    mismatch(moduleIdentity(), { deviceId: 'd2', moduleId: 'm1' });
    mismatch(moduleIdentity(), {});
  });

  it('device ids are case-sensitive', () => {
    mismatch(device(), { deviceId: 'D1' });
  });

  it('refuses an Event Hubs identity acting for a device or module, allows the hub scope', () => {
    mismatch(eventHub(), { deviceId: 'd1' });
    mismatch(eventHub(), { deviceId: 'd1', moduleId: 'm1' });
    checkScope(eventHub(), {});
  });

  it('lets service and gateway identities act for the hub and for any device', () => {
    for (const identity of [service(), gateway()]) {
      checkScope(identity, {});
      checkScope(identity, { deviceId: 'd1' });
      checkScope(identity, { deviceId: 'd2', moduleId: 'm9' });
    }
  });
});
