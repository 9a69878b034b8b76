import { strict as assert } from 'node:assert';
import { createHmac } from 'node:crypto';
import { SharedAccessSignature as CommonSas } from 'azure-iot-common';
import { SharedAccessSignature as DeviceSas } from 'azure-iot-device';
import { encodeUriComponentStrict, expiryIn, makeSasToken, parseSasToken, SasError, verifySasSignature } from '../../src/iothub/sas';

const HOST = 'myhub.azure-devices.net';
const KEY = Buffer.from('0123456789abcdef0123456789abcdef').toString('base64');
const OTHER_KEY = Buffer.from('fedcba9876543210fedcba9876543210').toString('base64');
const SE = 1_900_000_000;

/** Independent HMAC: what the token algorithm says, written out by hand. */
function sign(sr: string, se: string, key: Buffer): string {
  return createHmac('sha256', key).update(`${sr}\n${se}`).digest('base64');
}

function fieldsOf(token: string): Map<string, string> {
  const body = token.replace(/^SharedAccessSignature /, '');
  return new Map(body.split('&').map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
}

function sasError(token: string): SasError {
  try {
    parseSasToken(token);
  } catch (err) {
    assert.ok(err instanceof SasError);
    assert.equal(err.code, 'InvalidToken');
    return err;
  }
  assert.fail(`no error for ${token}`);
}

describe('sas: make, parse, verify', () => {
  it('makes sr, sig, se, skn with upper-case strict encoding and the documented signature', () => {
    const token = makeSasToken({ resource: `${HOST}/devices/d1`, key: KEY, expiry: SE + 0.7, keyName: 'my policy' });
    const sr = 'myhub.azure-devices.net%2Fdevices%2Fd1';
    const sig = encodeURIComponent(sign(sr, String(SE), Buffer.from(KEY, 'base64')));
    assert.equal(token, `SharedAccessSignature sr=${sr}&sig=${sig}&se=${SE}&skn=my%20policy`);
  });

  it('parses what it makes and verifies with the right key only', () => {
    const token = parseSasToken(makeSasToken({ resource: `${HOST}/devices/d1`, key: KEY, expiry: SE, keyName: 'device' }));
    assert.equal(token.rawResource, 'myhub.azure-devices.net%2Fdevices%2Fd1');
    assert.equal(token.resource, `${HOST}/devices/d1`);
    assert.equal(token.rawExpiry, String(SE));
    assert.equal(token.expiry, SE);
    assert.equal(token.keyName, 'device');
    assert.equal(token.signature, sign(token.rawResource, String(SE), Buffer.from(KEY, 'base64')));
    assert.equal(verifySasSignature(token, KEY, 'base64'), true);
    assert.equal(verifySasSignature(token, OTHER_KEY, 'base64'), false);
  });

  it('fails verification when sr or se were changed after signing', () => {
    const token = parseSasToken(makeSasToken({ resource: `${HOST}/devices/d1`, key: KEY, expiry: SE }));
    assert.equal(verifySasSignature({ ...token, rawResource: token.rawResource.replace('d1', 'd2') }, KEY, 'base64'), false);
    assert.equal(verifySasSignature({ ...token, rawExpiry: String(SE + 1) }, KEY, 'base64'), false);
    assert.equal(verifySasSignature({ ...token, signature: 'AAAA' }, KEY, 'base64'), false);
  });

  it('has no skn when no key name is given', () => {
    const text = makeSasToken({ resource: `${HOST}/devices/d1`, key: KEY, expiry: SE });
    assert.equal(fieldsOf(text).has('skn'), false);
    assert.equal(parseSasToken(text).keyName, undefined);
  });

  it('reads fields in any order', () => {
    const text = makeSasToken({ resource: HOST, key: KEY, expiry: SE, keyName: 'iothubowner' });
    const f = fieldsOf(text);
    const orders = [
      ['sig', 'se', 'skn', 'sr'],
      ['sr', 'sig', 'se', 'skn'],
      ['skn', 'se', 'sr', 'sig'],
    ];
    for (const order of orders) {
      const reordered = 'SharedAccessSignature ' + order.map((k) => `${k}=${f.get(k)}`).join('&');
      const token = parseSasToken(reordered);
      assert.equal(token.resource, HOST);
      assert.equal(token.keyName, 'iothubowner');
      assert.equal(verifySasSignature(token, KEY, 'base64'), true, order.join(','));
    }
  });

  it('verifies over sr exactly as sent (lower-case %2f made by hand)', () => {
    const sr = 'myhub.azure-devices.net%2fdevices%2fd1';
    const sig = encodeURIComponent(sign(sr, String(SE), Buffer.from(KEY, 'base64')));
    const token = parseSasToken(`SharedAccessSignature sr=${sr}&sig=${sig}&se=${SE}`);
    assert.equal(token.resource, `${HOST}/devices/d1`);
    assert.equal(verifySasSignature(token, KEY, 'base64'), true);
    // The same signature over the re-encoded (upper-case) sr must not verify: verification is over raw text.
    assert.equal(verifySasSignature({ ...token, rawResource: sr.replace(/%2f/g, '%2F') }, KEY, 'base64'), false);
  });

  it('decodes a C#-style "+" for space in sr', () => {
    const token = parseSasToken(`SharedAccessSignature sr=a+b%2Fc&sig=abc%3D&se=${SE}`);
    assert.equal(token.resource, 'a b/c');
    assert.equal(token.rawResource, 'a+b%2Fc');
  });

  it('keeps an expired se as a number; expiry is not the signature check', () => {
    const token = parseSasToken(makeSasToken({ resource: HOST, key: KEY, expiry: 1000 }));
    assert.equal(token.expiry, 1000);
    assert.equal(verifySasSignature(token, KEY, 'base64'), true);
  });

  it('expiryIn counts whole seconds from now, at least one', () => {
    assert.equal(expiryIn(3600, 1_700_000_000_999), 1_700_000_000 + 3600);
    assert.equal(expiryIn(0, 5_000), 6);
    assert.equal(expiryIn(-10, 5_000), 6);
    assert.equal(expiryIn(2.9, 5_000), 7);
  });

  it('text and base64 key encodings are different keys', () => {
    const ehKey = 'plain text key with spaces=';
    const textToken = parseSasToken(makeSasToken({ resource: 'sb://ns/hub', key: ehKey, expiry: SE, keyName: 's', encoding: 'text' }));
    assert.equal(textToken.signature, sign(textToken.rawResource, String(SE), Buffer.from(ehKey, 'utf8')));
    assert.equal(verifySasSignature(textToken, ehKey, 'text'), true);
    assert.equal(verifySasSignature(textToken, ehKey, 'base64'), false);
    const b64Token = parseSasToken(makeSasToken({ resource: 'sb://ns/hub', key: KEY, expiry: SE, keyName: 's' }));
    assert.equal(verifySasSignature(b64Token, KEY, 'base64'), true);
    assert.equal(verifySasSignature(b64Token, KEY, 'text'), false);
  });

  it("encodeUriComponentStrict escapes !'()* in upper case", () => {
    assert.equal(encodeUriComponentStrict("a!'()*b/c d"), 'a%21%27%28%29%2Ab%2Fc%20d');
  });

  it('rejects malformed tokens with a SasError', () => {
    assert.equal(sasError('sr=a&sig=b&se=1').message, 'token does not start with "SharedAccessSignature"');
    assert.equal(sasError('SharedAccessSignature sig=b&se=1').message, 'token has no "sr"');
    assert.equal(sasError('SharedAccessSignature sr=a&se=1').message, 'token has no "sig"');
    assert.equal(sasError('SharedAccessSignature sr=a&sig=b').message, 'token has no numeric "se"');
    assert.equal(sasError('SharedAccessSignature sr=a&sig=b&se=12x').message, 'token has no numeric "se"');
    assert.equal(sasError('SharedAccessSignature sr=a&sig=b&se=1&junk').message, 'token has a field that is not name=value');
    assert.equal(sasError('SharedAccessSignature sr=%E0%A4%A&sig=b&se=1').message, 'token has a field that is not URL-encoded');
    assert.throws(() => parseSasToken(42 as unknown as string), SasError);
  });
});

describe('sas: interop with the official azure-iot-common', () => {
  it('a device token made by azure-iot-device verifies', () => {
    for (const deviceId of ['d1', 'dev*(1)!', "o'neil:x@y"]) {
      const text = DeviceSas.create(HOST, deviceId, KEY, String(SE)).toString();
      const token = parseSasToken(text);
      assert.equal(token.resource, `${HOST}/devices/${deviceId}`);
      assert.equal(token.keyName, undefined);
      assert.equal(verifySasSignature(token, KEY, 'base64'), true, deviceId);
      assert.equal(verifySasSignature(token, OTHER_KEY, 'base64'), false, deviceId);
    }
  });

  it('a service token made by azure-iot-common (sr = host, skn = policy) verifies', () => {
    const text = CommonSas.create(HOST, 'iothubowner', KEY, SE).toString();
    assert.match(text, /^SharedAccessSignature sr=myhub\.azure-devices\.net&sig=[^&]+&skn=iothubowner&se=1900000000$/);
    const token = parseSasToken(text);
    assert.equal(token.keyName, 'iothubowner');
    assert.equal(verifySasSignature(token, KEY, 'base64'), true);
  });

  it('our token parses with theirs and carries the same signature they would make', () => {
    const resource = `${HOST}/devices/d1/modules/m1`;
    const ours = makeSasToken({ resource, key: KEY, expiry: SE, keyName: 'device' });
    const theirs = CommonSas.parse(ours, ['sr', 'sig', 'se']);
    assert.equal(theirs.sr, encodeURIComponent(resource));
    assert.equal(theirs.skn, 'device');
    assert.equal(String(theirs.se), String(SE));
    const remade = CommonSas.create(theirs.sr, theirs.skn, KEY, theirs.se);
    assert.equal(remade.sig, theirs.sig);
    assert.throws(() => CommonSas.parse(ours.replace('&sig=', '&zig='), ['sr', 'sig', 'se']));
  });
});
