/** The config node's settings read into its connection's options, identity and errors (src/nodes/connection-options.ts). */
import { strict as assert } from 'node:assert';
import { describeIdentity } from '../../src/iothub/log';
import {
  connectionConfig,
  localOptions,
  serviceEndpointOf,
  unquote,
  type ConnectionConfig,
  type ConnectionSettings,
  type ConnectionSources,
} from '../../src/nodes/connection-options';

const KEY = Buffer.from('a key nobody may see in a log').toString('base64');
const SIG = 'SharedAccessSignature sr=hub.azure-devices.net%2Fdevices%2Fd1&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D&se=1999999999';
const SERVICE = `HostName=hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`;

const DEFAULT_OPTIONS = {
  transport: 'amqps',
  tokenLifetimeSec: 3600,
  tokenRenewMarginSec: 900,
  reconnectMinMs: 1000,
  reconnectMaxMs: 60_000,
  throttleMinMs: 10_000,
  throttleMaxMs: 60_000,
  idleTimeoutMs: 120_000,
};

const noFiles = (path: string): Buffer => {
  throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' });
};

function read(settings: ConnectionSettings, connectionString?: string, sources: Partial<ConnectionSources> = {}): ConnectionConfig {
  return connectionConfig(settings, connectionString === undefined ? undefined : { connectionString }, { env: {}, readFile: noFiles, ...sources });
}

function azure(connectionString: string, settings: ConnectionSettings = {}, sources: Partial<ConnectionSources> = {}): ConnectionConfig {
  return read({ mode: 'azure', ...settings }, connectionString, sources);
}

describe('connection options (config node settings)', () => {
  it('defaults: local mode on port 5672 with the documented timings', () => {
    const config = read({});
    assert.equal(config.mode, 'local');
    assert.equal(config.role, 'local');
    assert.equal(config.localPort, 5672);
    assert.deepEqual(config.options, DEFAULT_OPTIONS);
    assert.equal(config.identity, undefined);
    assert.equal(config.configError, undefined);
    assert.deepEqual(read({ mode: 'azure' }, SERVICE).options, DEFAULT_OPTIONS);
  });

  it('local mode needs no connection string and ignores one', () => {
    const config = read({ mode: 'local', localPort: '15672' }, 'not a connection string');
    assert.equal(config.role, 'local');
    assert.equal(config.localPort, 15672);
    assert.equal(config.configError, undefined);
    assert.deepEqual(localOptions(config.options, 15672), { ...DEFAULT_OPTIONS, transport: 'amqp', connectHost: '127.0.0.1', port: 15672 });
  });

  it('reads each field, from editor strings and from flow-file numbers', () => {
    const options = read({
      transport: 'amqpws',
      tokenLifetime: '600',
      tokenRenewMargin: 120,
      reconnectMin: '50',
      reconnectMax: 2000,
      throttleMin: '20',
      throttleMax: '30',
      idleTimeout: '0',
    }).options;
    assert.deepEqual(options, {
      transport: 'amqpws',
      tokenLifetimeSec: 600,
      tokenRenewMarginSec: 120,
      reconnectMinMs: 50,
      reconnectMaxMs: 2000,
      throttleMinMs: 20,
      throttleMaxMs: 30,
      idleTimeoutMs: 0,
    });
    assert.equal(read({ transport: 'amqp' }).options.transport, 'amqp');
    assert.equal(read({ transport: 'amqps' }).options.transport, 'amqps');
    assert.equal(read({ localPort: 0 }).localPort, 0, 'port 0: any free port');
  });

  it('bad input falls back to the default: not a number, empty, negative, below the minimum, infinite', () => {
    // null and true: hand-edited flow files.
    for (const bad of ['abc', '', ' ', '-5', -5, 'Infinity', '1e999', Number.NaN, null as never, true as never]) {
      const config = read({
        tokenLifetime: bad,
        tokenRenewMargin: bad,
        reconnectMin: bad,
        reconnectMax: bad,
        throttleMin: bad,
        throttleMax: bad,
        idleTimeout: bad,
        localPort: bad,
      });
      assert.deepEqual(config.options, DEFAULT_OPTIONS, `for ${JSON.stringify(String(bad))}`);
      assert.equal(config.localPort, 5672, `port for ${JSON.stringify(String(bad))}`);
    }
    // The floors: tokens of at least 5 s renewed at least 1 s early, reconnects no sooner than 10 ms.
    assert.equal(read({ tokenLifetime: 4 }).options.tokenLifetimeSec, 3600);
    assert.equal(read({ tokenLifetime: 5 }).options.tokenLifetimeSec, 5);
    assert.equal(read({ tokenRenewMargin: 0 }).options.tokenRenewMarginSec, 900);
    assert.equal(read({ reconnectMin: 9 }).options.reconnectMinMs, 1000);
    assert.equal(read({ reconnectMax: 99 }).options.reconnectMaxMs, 60_000);
    assert.equal(read({ transport: 'mqtt' as never }).options.transport, 'amqps', 'an unknown transport is the default');
  });

  it('a maximum below its minimum is raised to the minimum', () => {
    const options = read({ reconnectMin: 5000, reconnectMax: 1000, throttleMin: 40_000, throttleMax: 20_000 }).options;
    assert.equal(options.reconnectMinMs, 5000);
    assert.equal(options.reconnectMaxMs, 5000);
    assert.equal(options.throttleMinMs, 40_000);
    assert.equal(options.throttleMaxMs, 40_000);
    // A maximum left at its default is still above a raised minimum.
    assert.equal(read({ reconnectMin: 90_000 }).options.reconnectMaxMs, 90_000);
  });

  it('azure mode: the connection string gives the identity and role', () => {
    const service = azure(SERVICE);
    assert.equal(service.role, 'gateway', 'a hub policy speaks for devices too');
    assert.deepEqual(service.identity, { kind: 'gateway', host: 'hub.azure-devices.net', policy: 'iothubowner', key: KEY });
    const device = azure(`HostName=hub.azure-devices.net;DeviceId=d1;SharedAccessKey=${KEY}`);
    assert.equal(device.role, 'device');
    const eventHub = azure(`Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=${KEY};EntityPath=hub`, {
      transport: 'amqpws',
    });
    assert.equal(eventHub.role, 'eventhub');
    assert.equal(eventHub.options.transport, 'amqpws');
  });

  it('the Event Hubs emulator string means plain AMQP', () => {
    const config = azure(
      `Endpoint=sb://localhost/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${KEY};EntityPath=hub;UseDevelopmentEmulator=true`,
    );
    assert.equal(config.options.transport, 'amqp');
  });

  it('${ENV_VAR} takes the connection string from the environment', () => {
    assert.equal(azure('${IOTHUB_CS}', {}, { env: { IOTHUB_CS: SERVICE } }).role, 'gateway');
    assert.equal(azure(' ${IOTHUB_CS} ', {}, { env: { IOTHUB_CS: SERVICE } }).role, 'gateway');
    const unset = azure('${IOTHUB_CS}', {}, { env: {} });
    assert.equal(unset.role, 'invalid');
    assert.equal(unset.configError?.code, 'InvalidConnectionString');
    assert.equal(unset.configError?.message, 'connection string: the environment variable IOTHUB_CS is not set or empty');
    const empty = azure('${IOTHUB_CS}', {}, { env: { IOTHUB_CS: '  ' } });
    assert.match(empty.configError?.message ?? '', /IOTHUB_CS is not set/);
    // The variable is named; a value it has is never said.
    const bad = azure('${IOTHUB_CS}', {}, { env: { IOTHUB_CS: 'SharedAccessKey=c2VjcmV0' } });
    assert.equal(bad.role, 'invalid');
    assert.ok(!(bad.configError?.message ?? '').includes('c2VjcmV0'));
  });

  it('a connection string in one pair of quotes (as `az` prints it) is read without them', () => {
    for (const quoted of [`"${SERVICE}"`, `'${SERVICE}'`, ` "${SERVICE}" `]) {
      const config = azure(quoted);
      assert.equal(config.role, 'gateway', quoted);
      assert.equal(config.configError, undefined);
    }
    assert.equal(azure('${IOTHUB_CS}', {}, { env: { IOTHUB_CS: `"${SERVICE}"` } }).role, 'gateway');
    // Only a matching pair is taken off.
    assert.equal(azure(`"${SERVICE}'`).role, 'invalid');
    assert.equal(unquote('"x"'), 'x');
    assert.equal(unquote('""x""'), '"x"');
    assert.equal(unquote('"'), '"');
    assert.equal(unquote('a"b"'), 'a"b"');
  });

  it('no or a bad connection string: an invalid config with a code', () => {
    for (const missing of [undefined, '', '   ']) {
      const config = read({ mode: 'azure' }, missing);
      assert.equal(config.role, 'invalid');
      assert.equal(config.configError?.code, 'InvalidConnectionString');
      assert.equal(config.identity, undefined);
    }
    const bad = azure('HostName=hub.azure-devices.net;SharedAccessKeyName=p');
    assert.equal(bad.role, 'invalid');
    assert.equal(bad.configError?.code, 'InvalidConnectionString');
    // Said once: no "connection string: connection string ..." prefix doubled onto the parser's words.
    assert.match(String(bad.configError?.message), /^service connection string is missing "SharedAccessKey"/);
  });

  it('a CA file is read; one that cannot be read is InvalidConfig with the reason code', () => {
    const pem = Buffer.from('-----BEGIN CERTIFICATE-----\n');
    const asked: string[] = [];
    const config = azure(SERVICE, { caFile: '/etc/ca.pem' }, { readFile: (path) => (asked.push(path), pem) });
    assert.deepEqual(asked, ['/etc/ca.pem']);
    assert.equal(config.options.ca, pem);
    assert.equal(config.configError, undefined);
    const unreadable = azure(SERVICE, { caFile: '/nope.pem' });
    assert.equal(unreadable.configError?.code, 'InvalidConfig');
    assert.equal(unreadable.configError?.message, 'cannot read the CA file (ENOENT)');
    assert.equal(read({ mode: 'local', caFile: '/nope.pem' }).configError, undefined, 'local mode reads no CA file');
  });

  it('nothing that goes to a log holds a key, a signature or the connection string', () => {
    const secrets = [KEY, 'c2VjcmV0LXNpZ25hdHVyZQ', SIG];
    const strings = [
      SERVICE,
      `HostName=hub.azure-devices.net;DeviceId=d1;SharedAccessKey=${KEY}`,
      `HostName=hub.azure-devices.net;DeviceId=d1;SharedAccessSignature=${SIG}`,
      `HostName=hub.azure-devices.net;DeviceId=d1;ModuleId=m;SharedAccessKey=${KEY};GatewayHostName=edge`,
      `Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=${KEY};EntityPath=hub`,
      // Broken ones, with the secret where a careless message would quote it.
      `HostName=hub.azure-devices.net;SharedAccessKeyName=p;SharedAccessKey=${KEY};${KEY}`,
      `HostName=hub.azure-devices.net;SharedAccessKeyName=p;SharedAccessKey=${KEY};DeviceKey=${KEY}`,
      `HostName=hub.azure-devices.net;SharedAccessKeyName=p;SharedAccessKey=${KEY}!`,
      `HostName=hub.azure-devices.net;DeviceId=d1;SharedAccessKey=${KEY};SharedAccessSignature=${SIG}`,
      `HostName=hub.azure-devices.net;DeviceId=d1;SharedAccessSignature=sig=${KEY}`,
    ];
    let invalid = 0;
    for (const text of strings) {
      const config = azure(text);
      const logged = [
        config.mode,
        config.role,
        JSON.stringify(config.options),
        config.configError?.message ?? '',
        config.configError?.code ?? '',
        config.identity ? describeIdentity(config.identity) : '',
      ];
      if (!config.identity) invalid++;
      for (const line of logged) for (const secret of secrets) assert.ok(!line.includes(secret), `"${line}" holds a secret (from ${text.slice(0, 40)}...)`);
    }
    assert.equal(invalid, 5, 'the broken strings are refused');
  });
});

describe('serviceEndpointOf: where the service nodes send REST calls', () => {
  it('Azure: 443 of the host name, even when HostName carries the AMQPS port', () => {
    const key = Buffer.from('k').toString('base64');
    for (const host of ['myhub.azure-devices.net', 'myhub.azure-devices.net:5671']) {
      const endpoint = serviceEndpointOf({ kind: 'service', host, policy: 'service', key }, undefined);
      assert.equal(endpoint.host, 'myhub.azure-devices.net');
      assert.equal(endpoint.port, 443);
      assert.equal(endpoint.connectHost, undefined);
    }
  });
});
