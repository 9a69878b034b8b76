import { strict as assert } from 'node:assert';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_OPTIONS, OptionsError, readConfigFile, resolveOptions, type SimulatorOptionsInput } from '../../src/simulator/options';

const GOOD_KEY = Buffer.alloc(32, 7).toString('base64');

function optionsError(input: SimulatorOptionsInput): string {
  try {
    resolveOptions(input);
  } catch (err) {
    assert.ok(err instanceof OptionsError, String(err));
    assert.equal(err.name, 'OptionsError');
    return err.message;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

describe('options: resolveOptions', () => {
  it('defaults', () => {
    const o = resolveOptions();
    assert.equal(o.host, '127.0.0.1');
    assert.equal(o.hostName, 'localhost');
    assert.equal(o.hubName, 'devhub');
    assert.equal(o.amqpPort, 5672);
    assert.equal(o.amqpsPort, 5671);
    assert.equal(o.wsPort, null);
    assert.equal(o.partitionCount, 4);
    assert.deepEqual(o.consumerGroups, ['$Default']);
    assert.equal(o.autoRegister, true);
    assert.equal(o.idleTimeoutMs, 240_000);
    assert.equal(o.c2d.maxQueueDepth, 50);
    assert.equal(o.d2c.maxMessageBytes, 256 * 1024);
    assert.equal(o.certDir, path.join(os.homedir(), '.iothub-sim'));
  });

  it('merges nested settings over the defaults and ignores undefined', () => {
    const o = resolveOptions({ amqpPort: 0, hubName: undefined, c2d: { maxQueueDepth: 5, lockMs: undefined } });
    assert.equal(o.amqpPort, 0);
    assert.equal(o.hubName, 'devhub');
    assert.equal(o.c2d.maxQueueDepth, 5);
    assert.equal(o.c2d.lockMs, DEFAULT_OPTIONS.c2d.lockMs);
    assert.equal(o.c2d.maxDeliveryCount, DEFAULT_OPTIONS.c2d.maxDeliveryCount);
    // The defaults object itself is untouched.
    assert.equal(DEFAULT_OPTIONS.c2d.maxQueueDepth, 50);
  });

  it('accepts devices and policies with good keys', () => {
    const o = resolveOptions({
      devices: [{ deviceId: 'd1', primaryKey: GOOD_KEY, modules: [{ moduleId: 'm1' }] }],
      policies: [{ name: 'svc', primaryKey: GOOD_KEY, rights: ['ServiceConnect'] }],
    });
    assert.equal(o.devices[0].deviceId, 'd1');
    assert.equal(o.policies?.[0].name, 'svc');
  });

  it('each validation error names the field', () => {
    const cases: Array<[SimulatorOptionsInput, string]> = [
      [{ amqpPort: 70000 }, 'amqpPort must be a port number from 0 to 65535'],
      [{ amqpsPort: -1 }, 'amqpsPort must be a port number from 0 to 65535'],
      [{ wsPort: 1.5 }, 'wsPort must be a port number from 0 to 65535'],
      [{ amqpPort: null, amqpsPort: null, wsPort: null }, 'at least one of amqpPort, amqpsPort and wsPort must be on'],
      [{ hostName: 'bad host' }, 'hostName must be a host name'],
      [{ hubName: 'x' }, 'hubName must be 3 to 50 letters, digits or hyphens'],
      [{ partitionCount: 33 }, 'partitionCount must be from 1 to 32'],
      [{ partitionCount: 0 }, 'partitionCount must be from 1 to 32'],
      [{ consumerGroups: ['$Default', ''] }, 'consumerGroups must be a list of names'],
      [{ sweepIntervalMs: 5 }, 'sweepIntervalMs must be a number of at least 10'],
      [{ tokenGraceMs: -1 }, 'tokenGraceMs must be a number of at least 0'],
      [{ c2d: { maxQueueDepth: 0 } }, 'c2d.maxQueueDepth must be a number of at least 1'],
      [{ d2c: { retentionMs: Number.NaN } }, 'd2c.retentionMs must be a number of at least 1'],
      [{ devices: [{ deviceId: 'bad id' }] }, 'devices[0].deviceId is missing or invalid'],
      [{ devices: [{ deviceId: 'ok' }, { deviceId: 'x'.repeat(129) }] }, 'devices[1].deviceId is missing or invalid'],
      [{ devices: [{ deviceId: 'd1', primaryKey: 'c2hvcnQ=' }] }, 'devices[0].primaryKey must be a base64 key of at least 16 bytes'],
      [{ devices: [{ deviceId: 'd1', secondaryKey: 'not base64!' }] }, 'devices[0].secondaryKey must be a base64 key of at least 16 bytes'],
      [{ devices: [{ deviceId: 'd1', modules: [{ moduleId: 'm 1' }] }] }, 'devices[0].modules[0].moduleId is missing or invalid'],
      [
        { devices: [{ deviceId: 'd1', modules: [{ moduleId: 'm1', primaryKey: 'abc' }] }] },
        'devices[0].modules[0].primaryKey must be a base64 key of at least 16 bytes',
      ],
      [{ policies: [] }, 'policies must be a non-empty list'],
      [{ policies: [{ name: 'a b', primaryKey: GOOD_KEY, rights: [] }] }, 'policies[0].name is missing or invalid'],
      [{ policies: [{ name: 'p', primaryKey: 'short', rights: [] }] }, 'policies[0].primaryKey must be a base64 key of at least 16 bytes'],
    ];
    for (const [input, message] of cases) assert.equal(optionsError(input), message, JSON.stringify(input));
  });

  it('rejects unknown policy rights, listing the known ones', () => {
    const bad = { name: 'p', primaryKey: GOOD_KEY, rights: ['Everything'] } as unknown as NonNullable<SimulatorOptionsInput['policies']>[number];
    assert.equal(optionsError({ policies: [bad] }), 'policies[0].rights must list some of RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect');
  });

  it('does not repeat a bad key in the error', () => {
    const secret = 'TOPSECRET-not-base64';
    const message = optionsError({ devices: [{ deviceId: 'd1', primaryKey: secret }] });
    assert.ok(!message.includes(secret));
  });
});

describe('options: readConfigFile', () => {
  let dir = '';
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'iothub-sim-options-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function readError(file: string): Promise<string> {
    try {
      await readConfigFile(file);
    } catch (err) {
      assert.ok(err instanceof OptionsError, String(err));
      assert.ok(!err.message.includes('\n'), `not one line: ${err.message}`);
      return err.message;
    }
    assert.fail(`read ${file}`);
  }

  it('reads a good file', async () => {
    const file = path.join(dir, 'good.json');
    await fs.writeFile(file, JSON.stringify({ hubName: 'myhub', devices: [{ deviceId: 'd1' }], policies: [], tls: {} }));
    assert.deepEqual(await readConfigFile(file), { hubName: 'myhub', devices: [{ deviceId: 'd1' }], policies: [], tls: {} });
  });

  it('a missing file', async () => {
    const file = path.join(dir, 'nope.json');
    assert.equal(await readError(file), `cannot read config file ${file}: ENOENT`);
  });

  it('broken JSON', async () => {
    const file = path.join(dir, 'broken.json');
    await fs.writeFile(file, '{\n  "hubName": "x",\n  oops\n}\n');
    assert.equal(await readError(file), `config file ${file} is not valid JSON (at character 22)`);
  });

  it('broken JSON around a key does not quote the key', async () => {
    const file = path.join(dir, 'broken-key.json');
    await fs.writeFile(file, '{ "devices": [{ "deviceId": "d", "primaryKey": SGVsbG9Mb2NhbElvVEh1Yk93bmVy }] }');
    const message = await readError(file);
    assert.ok(!message.includes('SGVsbG9'), message);
  });

  it('not an object', async () => {
    const file = path.join(dir, 'array.json');
    await fs.writeFile(file, '[1,2]');
    assert.equal(await readError(file), `config file ${file} must hold a JSON object`);
  });

  it('an unknown key', async () => {
    const file = path.join(dir, 'unknown.json');
    await fs.writeFile(file, JSON.stringify({ hubName: 'myhub', partitions: 4 }));
    assert.equal(await readError(file), `config file ${file} has an unknown setting "partitions"`);
  });
});
