/** The one vocabulary of statuses: a cause in a few translated words, never a raw code. */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { HubError, toHubError } from '../../src/iothub/errors';
import { errorText, statusFor } from '../../src/nodes/status';

const ROOT = path.resolve(__dirname, '../../..');

function socketError(code: string): Error {
  return Object.assign(new Error(`getaddrinfo ${code} hub.example`), { code });
}

describe('status vocabulary', () => {
  it('names the socket cause behind a NotConnected, while the code a flow sees stays NotConnected', () => {
    const notFound = toHubError(socketError('ENOTFOUND'), 'could not connect to the hub');
    assert.equal(notFound.code, 'NotConnected');
    assert.equal(notFound.socketCode, 'ENOTFOUND');
    assert.equal(errorText(notFound), 'iothub-common.status.host-not-found');
    assert.equal(errorText(toHubError(socketError('EAI_AGAIN'))), 'iothub-common.status.host-not-found');
    assert.equal(errorText(toHubError(socketError('ECONNREFUSED'))), 'iothub-common.status.refused');
    assert.equal(errorText(toHubError(socketError('EHOSTUNREACH'))), 'iothub-common.status.unreachable');
    // A drop is what Node-RED calls disconnected.
    assert.equal(errorText(toHubError(socketError('ECONNRESET'))), 'node-red:common.status.disconnected');
  });

  it('maps codes to words, and anything unknown to one word, never to the raw code', () => {
    assert.equal(errorText(new HubError('Unauthorized', 'x')), 'iothub-common.status.unauthorized');
    assert.equal(errorText(new HubError('IdentityMismatch', 'x')), 'iothub-common.status.identity-mismatch');
    assert.equal(errorText(new HubError('InvalidConnectionString', 'x')), 'iothub-common.status.invalid-connection-string');
    assert.equal(errorText(new HubError('InvalidConfig', 'x')), 'iothub-common.status.invalid-config');
    assert.equal(errorText(new HubError('Timeout', 'x')), 'iothub-common.status.timeout');
    assert.equal(errorText(new HubError('NotImplemented', 'x')), 'iothub-common.status.failed');
  });

  it('keeps a cause on show while the connection tries again, but a plain drop reconnects as "connecting"', () => {
    const notFound = toHubError(socketError('ENOTFOUND'));
    assert.equal(statusFor('reconnecting', notFound).text, 'iothub-common.status.host-not-found');
    assert.equal(statusFor('connecting', notFound).text, 'iothub-common.status.host-not-found');
    assert.equal(statusFor('connecting', toHubError(socketError('ECONNRESET'))).text, 'node-red:common.status.connecting');
    assert.equal(statusFor('connecting').text, 'node-red:common.status.connecting');
    assert.equal(statusFor('open', notFound).text, 'node-red:common.status.connected');
    assert.equal(statusFor('invalid', new HubError('InvalidConnectionString', 'x')).text, 'iothub-common.status.invalid-connection-string');
  });

  it('every status word fits a node status (30 characters) in every language', () => {
    const source = readFileSync(path.join(ROOT, 'src', 'nodes', 'status.ts'), 'utf8');
    const keys = [...new Set([...source.matchAll(/'iothub-common\.status\.([a-z-]+)'/g)].map((m) => m[1] as string))];
    assert.ok(keys.length > 10);
    for (const lang of ['en-US', 'de']) {
      const catalog = JSON.parse(readFileSync(path.join(ROOT, 'nodes', 'locales', lang, 'iothub-device-out.json'), 'utf8')) as {
        'iothub-common': { status: Record<string, string> };
      };
      for (const key of keys) {
        const word = catalog['iothub-common'].status[key];
        assert.ok(word, `${lang}: ${key}`);
        assert.ok(word.length <= 30, `${lang}: ${key} is ${word.length} characters: ${word}`);
      }
    }
  });
});
