import { strict as assert } from 'node:assert';
import {
  ConnectionStringError,
  formatDeviceConnectionString,
  formatEventHubConnectionString,
  formatServiceConnectionString,
  hubNameOf,
  parseConnectionString,
  redactConnectionString,
  splitConnectionString,
} from '../../src/iothub/connection-string';

const HOST = 'myhub.azure-devices.net';
// Keys whose base64 padding must survive the split at the first '='.
const KEY1 = 'c2VjcmV0LWtleS1vbmU='; // one '='
const KEY2 = 'c2VjcmV0LWtleS0y'; // none
const KEY3 = 'c2VjcmV0LWtleS10aHJlZQ=='; // two '='
const SAS = 'SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fd1&sig=abc%3D&se=1700000000';

function errorOf(text: string, options?: { gatewayPolicy?: boolean }): ConnectionStringError {
  try {
    parseConnectionString(text, options);
  } catch (err) {
    assert.ok(err instanceof ConnectionStringError, `expected ConnectionStringError, got ${String(err)}`);
    assert.equal(err.code, 'InvalidConnectionString');
    return err;
  }
  assert.fail(`no error for ${text}`);
}

describe('connection-string: valid forms', () => {
  it('parses a service policy string and keeps base64 padding', () => {
    for (const key of [KEY1, KEY2, KEY3]) {
      const id = parseConnectionString(`HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`);
      assert.deepEqual(id, { kind: 'service', host: HOST, policy: 'iothubowner', key });
    }
  });

  it('reads a policy string as a gateway identity when asked', () => {
    const id = parseConnectionString(`HostName=${HOST};SharedAccessKeyName=device;SharedAccessKey=${KEY3}`, { gatewayPolicy: true });
    assert.deepEqual(id, { kind: 'gateway', host: HOST, policy: 'device', key: KEY3 });
  });

  it('parses a device key string in any field order, tolerating blanks and a trailing ;', () => {
    const id = parseConnectionString(` SharedAccessKey=${KEY3};DeviceId=dev-1;;HostName=${HOST}; `);
    assert.deepEqual(id, { kind: 'device', host: HOST, deviceId: 'dev-1', key: KEY3 });
  });

  it('parses a device SAS string, keeping every "=" of the token', () => {
    const id = parseConnectionString(`HostName=${HOST};DeviceId=d1;SharedAccessSignature=${SAS}`);
    assert.deepEqual(id, { kind: 'device', host: HOST, deviceId: 'd1', sas: SAS });
  });

  it('parses a module string and a GatewayHostName', () => {
    const id = parseConnectionString(`HostName=${HOST};DeviceId=d1;ModuleId=m1;SharedAccessKey=${KEY1};GatewayHostName=edge.local`);
    assert.deepEqual(id, { kind: 'device', host: HOST, deviceId: 'd1', moduleId: 'm1', key: KEY1, gatewayHost: 'edge.local' });
  });

  it('accepts a host with a port', () => {
    const id = parseConnectionString(`HostName=localhost:5671;DeviceId=d1;SharedAccessKey=${KEY1}`);
    assert.equal(id.host, 'localhost:5671');
  });

  it('parses an Event Hubs-compatible string without and with UseDevelopmentEmulator', () => {
    const plain = parseConnectionString(`Endpoint=sb://ihsuprod.servicebus.windows.net/;SharedAccessKeyName=service;SharedAccessKey=${KEY1};EntityPath=myhub`);
    assert.deepEqual(plain, { kind: 'eventhub', host: 'ihsuprod.servicebus.windows.net', entityPath: 'myhub', policy: 'service', key: KEY1, emulator: false });
    const emu = parseConnectionString(
      `Endpoint=sb://localhost:5672;SharedAccessKeyName=service;SharedAccessKey=${KEY3};EntityPath=devhub;UseDevelopmentEmulator=true`,
    );
    assert.deepEqual(emu, { kind: 'eventhub', host: 'localhost:5672', entityPath: 'devhub', policy: 'service', key: KEY3, emulator: true });
    const off = parseConnectionString(`Endpoint=sb://localhost/;SharedAccessKeyName=s;SharedAccessKey=k;EntityPath=e;UseDevelopmentEmulator=FALSE`);
    assert.equal(off.kind === 'eventhub' && off.emulator, false);
  });

  it('round-trips the format helpers', () => {
    assert.deepEqual(parseConnectionString(formatServiceConnectionString(HOST, 'service', KEY3)), {
      kind: 'service',
      host: HOST,
      policy: 'service',
      key: KEY3,
    });
    assert.deepEqual(parseConnectionString(formatDeviceConnectionString(HOST, 'd1', KEY1, { moduleId: 'm', gatewayHost: 'gw' })), {
      kind: 'device',
      host: HOST,
      deviceId: 'd1',
      moduleId: 'm',
      key: KEY1,
      gatewayHost: 'gw',
    });
    assert.deepEqual(parseConnectionString(formatEventHubConnectionString('localhost:5672', 'devhub', 'service', KEY1, true)), {
      kind: 'eventhub',
      host: 'localhost:5672',
      entityPath: 'devhub',
      policy: 'service',
      key: KEY1,
      emulator: true,
    });
  });

  it('splitConnectionString splits at the first "=" only', () => {
    const fields = splitConnectionString(`SharedAccessKey=${KEY3};SharedAccessSignature=${SAS}`);
    assert.equal(fields.get('SharedAccessKey'), KEY3);
    assert.equal(fields.get('SharedAccessSignature'), SAS);
  });

  it('hubNameOf and redactConnectionString', () => {
    assert.equal(hubNameOf('myhub.azure-devices.net'), 'myhub');
    assert.equal(hubNameOf('localhost:5671'), 'localhost');
    const red = redactConnectionString(`HostName=${HOST};DeviceId=d1;SharedAccessKey=${KEY3}`);
    assert.equal(red, `HostName=${HOST};DeviceId=d1;SharedAccessKey=***`);
    assert.equal(redactConnectionString(`HostName=h;DeviceId=d;SharedAccessSignature=${SAS}`), 'HostName=h;DeviceId=d;SharedAccessSignature=***');
  });
});

describe('connection-string: errors name the key', () => {
  const cases: Array<[string, string]> = [
    ['', 'connection string is empty'],
    ['   ', 'connection string is empty'],
    [`SharedAccessKeyName=p;SharedAccessKey=${KEY1}`, 'service connection string is missing "HostName"'],
    [`HostName=${HOST};SharedAccessKeyName=p`, 'service connection string is missing "SharedAccessKey"'],
    [`HostName=${HOST};SharedAccessKeyName=;SharedAccessKey=${KEY1}`, 'service connection string is missing "SharedAccessKeyName"'],
    [`HostName=${HOST};SharedAccessKeyName=p;SharedAccessKey=${KEY1};ModuleId=m`, 'service connection string must not have "ModuleId"'],
    [`HostName=${HOST};SharedAccessKeyName=p;SharedAccessKey=${KEY1};GatewayHostName=g`, 'service connection string must not have "GatewayHostName"'],
    [`HostName=${HOST};SharedAccessKeyName=p;SharedAccessKey=${KEY1};EntityPath=e`, 'service connection string must not have "EntityPath"'],
    [`HostName=${HOST}`, 'connection string needs "DeviceId" (device) or "SharedAccessKeyName" (policy)'],
    [`SharedAccessKey=${KEY1}`, 'connection string is missing "HostName" (or "Endpoint")'],
    [`DeviceId=d1;SharedAccessKey=${KEY1}`, 'device connection string is missing "HostName"'],
    [`HostName=${HOST};DeviceId=;SharedAccessKey=${KEY1}`, 'device connection string is missing "DeviceId"'],
    [`HostName=${HOST};DeviceId=d1`, 'device connection string is missing "SharedAccessKey" or "SharedAccessSignature"'],
    [
      `HostName=${HOST};DeviceId=d1;SharedAccessKey=${KEY1};SharedAccessSignature=${SAS}`,
      'device connection string must have only one of "SharedAccessKey" and "SharedAccessSignature"',
    ],
    [`HostName=${HOST};DeviceId=d1;SharedAccessKeyName=p;SharedAccessKey=${KEY1}`, 'device connection string must not have "SharedAccessKeyName"'],
    [`HostName=${HOST};DeviceId=d1;SharedAccessKey=${KEY1};UseDevelopmentEmulator=true`, 'device connection string must not have "UseDevelopmentEmulator"'],
    [`HostName=${HOST};DeviceId=d1;x509=true`, 'device connection string uses "x509", which this package does not support yet'],
    [`HostName=${HOST};DeviceId=d1;Foo=bar;SharedAccessKey=${KEY1}`, 'connection string has an unexpected key "Foo"'],
    [`HostName=${HOST};hostname=x;DeviceId=d1;SharedAccessKey=${KEY1}`, 'connection string key "hostname" must be written "HostName"'],
    [`HostName=${HOST};HostName=other;DeviceId=d1;SharedAccessKey=${KEY1}`, 'connection string repeats the key "HostName"'],
    [`HostName=${HOST};DeviceId=d1;SharedAccessKey=${KEY1};=x`, 'connection string has a part that is not Key=Value'],
    [`HostName=my_hub/x;DeviceId=d1;SharedAccessKey=${KEY1}`, '"HostName" must be a host name such as myhub.azure-devices.net'],
    [`Endpoint=http://x/;SharedAccessKeyName=p;SharedAccessKey=k;EntityPath=e`, '"Endpoint" must look like sb://<namespace host>/'],
    [`Endpoint=sb://x/;SharedAccessKeyName=p;SharedAccessKey=k`, 'Event Hubs connection string is missing "EntityPath"'],
    [`Endpoint=sb://x/;SharedAccessKey=k;EntityPath=e`, 'Event Hubs connection string is missing "SharedAccessKeyName"'],
    [`Endpoint=sb://x/;SharedAccessKeyName=p;EntityPath=e`, 'Event Hubs connection string is missing "SharedAccessKey"'],
    [`Endpoint=sb://x/;HostName=h;SharedAccessKeyName=p;SharedAccessKey=k;EntityPath=e`, 'Event Hubs connection string must not have "HostName"'],
    [`Endpoint=sb://x/;SharedAccessKeyName=p;SharedAccessKey=k;EntityPath=e;UseDevelopmentEmulator=yes`, '"UseDevelopmentEmulator" must be true or false'],
  ];
  for (const [text, message] of cases) {
    it(`"${text.slice(0, 70)}" -> ${message}`, () => {
      assert.equal(errorOf(text).message, message);
    });
  }

  it('rejects a key that is not base64, naming the key field', () => {
    assert.equal(errorOf(`HostName=${HOST};DeviceId=d1;SharedAccessKey=not base64!`).message, '"SharedAccessKey" is not a base64 key');
    assert.equal(errorOf(`HostName=${HOST};SharedAccessKeyName=p;SharedAccessKey=abc===`).message, '"SharedAccessKey" is not a base64 key');
  });

  it('rejects a SharedAccessSignature that is not a token', () => {
    assert.equal(
      errorOf(`HostName=${HOST};DeviceId=d1;SharedAccessSignature=sr=x&sig=y&se=1`).message,
      '"SharedAccessSignature" must start with "SharedAccessSignature sr="',
    );
  });
});

describe('connection-string: errors never repeat a secret', () => {
  // A recognisable secret in shapes a user might paste by mistake.
  const SECRET = 'TOPSECRETkeyMATERIAL';
  const SECRET_B64 = Buffer.from('TOP-SECRET-KEY-MATERIAL-0123456').toString('base64'); // 44 chars, ends '='
  const inputs = [
    `HostName=${HOST};DeviceId=d1;SharedAccessKey=${SECRET}!!`,
    `HostName=${HOST};SharedAccessKeyName=p;SharedAccessKey=${SECRET}%%`,
    `HostName=${HOST};DeviceId=d1;SharedAccessSignature=sig=${SECRET}`,
    `HostName=${HOST};DeviceId=d1;SharedAccessKey=${SECRET_B64};SharedAccessSignature=SharedAccessSignature sig=${SECRET}`,
    `HostName=${HOST};DeviceId=d1;${SECRET}`,
    `HostName=${HOST};DeviceId=d1;${SECRET_B64}`,
    `HostName=${HOST};DeviceId=d1;SharedAccessKey=${SECRET_B64};SharedAccessKey=${SECRET_B64}`,
    `HostName=${HOST};DeviceId=d1;sharedaccesskey=${SECRET_B64}`,
    `HostName=${SECRET_B64};DeviceId=d1;SharedAccessKey=${KEY1}`,
    `HostName=${HOST};DeviceId=d1;SharedAccessKey=${SECRET_B64};x509=true`,
    `HostName=${HOST};DeviceId=d1;SharedAccessKeyName=p;SharedAccessKey=${SECRET_B64}`,
    `Endpoint=sb://x/;SharedAccessKeyName=p;SharedAccessKey=${SECRET};UseDevelopmentEmulator=${SECRET}`,
    `Endpoint=${SECRET};SharedAccessKeyName=p;SharedAccessKey=${SECRET};EntityPath=e`,
    `${SECRET}`,
    `SharedAccessKey=${SECRET_B64}`,
  ];
  for (const text of inputs) {
    it(`no secret in the error for "${text.slice(0, 60)}..."`, () => {
      const message = errorOf(text).message;
      assert.ok(!message.includes(SECRET), message);
      assert.ok(!message.includes(SECRET_B64.slice(0, 16)), message);
    });
  }

  it('does not quote a pasted bare base64 key as an unexpected key name', () => {
    const shortKey = Buffer.from('secret-key-12345').toString('base64'); // 'c2VjcmV0LWtleS0xMjM0NQ=='
    const message = errorOf(`HostName=${HOST};DeviceId=d1;${shortKey}`).message;
    assert.ok(!message.includes(shortKey.replace(/=+$/, '')), message);
  });
});
