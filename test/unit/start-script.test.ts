/** `npm start`'s own choices, without starting anything: its simulator's feedback pace and Node-RED's credential key. */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CREDENTIAL_SECRET_FILE, DEMO_FLOW, demoCredentialSecret, demoFlows, demoSimulatorOptions, flowDevices } from '../../scripts/start';
import { PACKAGE_ROOT } from '../../scripts/node-red-setup';
import { DEFAULT_OPTIONS, LOCAL_FEEDBACK_FLUSH_MS } from '../../src/simulator';

describe('npm start (scripts/start.ts)', () => {
  it("flushes feedback as the config node's local simulator does (about 2 s), not at the hub's 15 s", () => {
    assert.equal(LOCAL_FEEDBACK_FLUSH_MS, 2000, 'the help and the README say about 2 s');
    assert.notEqual(DEFAULT_OPTIONS.feedback.flushIntervalMs, LOCAL_FEEDBACK_FLUSH_MS);
    const options = demoSimulatorOptions(5672, 5671);
    assert.equal(options.feedback?.flushIntervalMs, LOCAL_FEEDBACK_FLUSH_MS);
    assert.deepEqual([options.amqpPort, options.amqpsPort], [5672, 5671]);
    assert.equal(options.restPort, 0, 'the REST API (methods, twins) on a free port');
  });

  it('registers the devices the flows name on a local connection (device in, method in, twin), as a hub has them before a flow runs', () => {
    assert.deepEqual(flowDevices(demoFlows(path.join(PACKAGE_ROOT, DEMO_FLOW), 5672)), ['demo-sensor'], "the demo's device");
    const flows = [
      { id: 'local', type: 'iothub-connection', mode: 'local' },
      { id: 'cloud', type: 'iothub-connection', mode: 'azure' },
      { id: 'a', type: 'iothub-device-in', hub: 'local', deviceId: 'press-1' },
      { id: 'b', type: 'iothub-method-in', hub: 'local', deviceId: 'press-2, press-3', deviceIdType: 'str' },
      { id: 'c', type: 'iothub-twin', hub: 'local', deviceId: 'press-3 press-4' },
      { id: 'd', type: 'iothub-device-in', hub: 'cloud', deviceId: 'in-azure' },
      { id: 'e', type: 'iothub-device-in', hub: 'local', deviceId: 'deviceId', deviceIdType: 'msg' },
      { id: 'f', type: 'iothub-twin', hub: 'local', deviceId: 'DEVICE', deviceIdType: 'env' },
      { id: 'g', type: 'iothub-method-in', hub: 'local', deviceId: '${PLC}' },
      { id: 'h', type: 'iothub-c2d-send', hub: 'local', deviceId: 'only-a-target' },
      { id: 'i', type: 'iothub-device-in', hub: 'local', deviceId: '' },
    ];
    assert.deepEqual(flowDevices(flows), ['press-1', 'press-2', 'press-3', 'press-4']);
  });

  it('makes the credential key once per user directory and keeps it there, readable by its owner only', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-secret-'));
    try {
      const first = demoCredentialSecret(dir);
      assert.match(first, /^[0-9a-f]{64}$/);
      assert.equal(demoCredentialSecret(dir), first, 'a restart keeps the key, so flows_cred.json stays readable');
      const file = path.join(dir, CREDENTIAL_SECRET_FILE);
      assert.equal(readFileSync(file, 'utf8').trim(), first);
      assert.equal(statSync(file).mode & 0o077, 0);
      const other = mkdtempSync(path.join(os.tmpdir(), 'iothub-secret-'));
      try {
        assert.notEqual(demoCredentialSecret(other), first, 'each user directory has its own key');
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
