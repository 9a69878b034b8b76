/** redactSecrets: text from the hub or an error, made safe for the Node-RED log. */
import { strict as assert } from 'node:assert';
import { redactSecrets } from '../../src/iothub/log';

describe('redactSecrets', () => {
  it('replaces keys, signatures and tokens, and keeps the rest', () => {
    const key = 'c2VjcmV0IGtleSBtYXRlcmlhbA==';
    const token = 'SharedAccessSignature sr=hub.azure-devices.net%2Fdevices%2Fd1&sig=AbC%2Bd%3D&se=1999999999&skn=owner';
    assert.equal(redactSecrets(`HostName=h;SharedAccessKeyName=p;SharedAccessKey=${key}`), 'HostName=h;SharedAccessKeyName=p;SharedAccessKey=***');
    assert.equal(
      redactSecrets(`HostName=h;DeviceId=d;SharedAccessSignature=${token};GatewayHostName=g`),
      'HostName=h;DeviceId=d;SharedAccessSignature=***;GatewayHostName=g',
    );
    assert.equal(redactSecrets(`put-token refused for ${token} (expired)`), 'put-token refused for SharedAccessSignature *** (expired)');
    assert.equal(redactSecrets('audience sr=hub&sig=xyz&se=1'), 'audience sr=hub&sig=***&se=1');
    assert.equal(redactSecrets("The device 'ghost-2' is not registered."), "The device 'ghost-2' is not registered.");
  });
});
