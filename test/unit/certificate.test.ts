import { strict as assert } from 'node:assert';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { loadOrMakeCertificate, makeSelfSignedCertificate, positiveInteger, type Certificate } from '../../src/simulator/certificate';

/** Serves one TLS connection on 127.0.0.1 and reports what the client made of it. */
async function handshake(cert: Certificate, client: tls.ConnectionOptions): Promise<{ authorized: boolean; error?: string; reply?: string }> {
  const server = tls.createServer({ cert: cert.cert, key: cert.key }, (socket) => {
    socket.on('error', () => undefined);
    socket.end('hello');
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    return await new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ...client });
      let reply = '';
      socket.on('secureConnect', () => {
        const authorized = socket.authorized;
        socket.on('data', (d: Buffer) => (reply += d.toString()));
        socket.on('end', () => resolve({ authorized, reply }));
      });
      socket.on('error', (err: NodeJS.ErrnoException) => resolve({ authorized: false, error: err.code ?? err.message }));
    });
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe('certificate: DER integers', () => {
  // A serial starting with a zero byte once made a certificate OpenSSL refused ("illegal padding").
  it('are minimal: leading zero bytes go, one stays only to keep the top bit clear', () => {
    assert.deepEqual(positiveInteger(Buffer.from([0x00, 0x01, 0x02])), Buffer.from([0x02, 0x02, 0x01, 0x02]));
    assert.deepEqual(positiveInteger(Buffer.from([0x00, 0x00, 0x81])), Buffer.from([0x02, 0x02, 0x00, 0x81]));
    assert.deepEqual(positiveInteger(Buffer.from([0x81, 0x00])), Buffer.from([0x02, 0x03, 0x00, 0x81, 0x00]));
    assert.deepEqual(positiveInteger(Buffer.from([0x00])), Buffer.from([0x02, 0x01, 0x00]));
  });

  it('every one of many made certificates loads into a TLS context', () => {
    for (let i = 0; i < 200; i++) {
      const made = makeSelfSignedCertificate();
      tls.createSecureContext({ ca: made.cert, cert: made.cert, key: made.key });
    }
  });
});

describe('certificate: makeSelfSignedCertificate', () => {
  const made = makeSelfSignedCertificate(['sim.example', '10.1.2.3']);
  const x509 = new X509Certificate(made.cert);

  it('names localhost, 127.0.0.1, ::1 and the extra names', () => {
    const san = (x509.subjectAltName ?? '').split(', ');
    assert.deepEqual(san, ['DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1', 'DNS:sim.example', 'IP Address:10.1.2.3']);
    assert.equal(x509.checkHost('localhost'), 'localhost');
    assert.equal(x509.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(x509.checkIP('::1'), '::1');
    assert.equal(x509.checkHost('other.example'), undefined);
  });

  it('is a self-signed CA, valid now and for years, with a matching key', () => {
    assert.equal(x509.ca, true);
    assert.equal(x509.subject, 'CN=IoT Hub simulator (local)');
    assert.equal(x509.issuer, x509.subject);
    assert.equal(x509.verify(x509.publicKey), true);
    assert.equal(x509.checkPrivateKey(createPrivateKey(made.key)), true);
    const now = Date.now();
    assert.ok(new Date(x509.validFrom).getTime() < now);
    assert.ok(new Date(x509.validTo).getTime() > now + 9 * 365 * 24 * 3600 * 1000);
  });

  it('a TLS client that passes it as ca trusts a server using it', async () => {
    const byName = await handshake(made, { ca: made.cert, servername: 'localhost' });
    assert.deepEqual(byName, { authorized: true, reply: 'hello' });
    const byIp = await handshake(made, { ca: made.cert });
    assert.deepEqual(byIp, { authorized: true, reply: 'hello' });
  });

  it('a client without it, or for another name, refuses', async () => {
    const untrusted = await handshake(made, { servername: 'localhost' });
    assert.equal(untrusted.authorized, false);
    assert.equal(untrusted.error, 'DEPTH_ZERO_SELF_SIGNED_CERT');
    const wrongName = await handshake(made, { ca: made.cert, servername: 'other.example' });
    assert.equal(wrongName.error, 'ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('every call makes a new key', () => {
    assert.notEqual(makeSelfSignedCertificate().key, made.key);
  });
});

describe('certificate: loadOrMakeCertificate', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'iothub-sim-cert-'));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('stores cert.pem and key.pem, then reuses them', async () => {
    const certDir = path.join(dir, 'nested', 'certs');
    const first = await loadOrMakeCertificate(certDir);
    assert.equal(await fs.readFile(path.join(certDir, 'cert.pem'), 'utf8'), first.cert);
    assert.equal(await fs.readFile(path.join(certDir, 'key.pem'), 'utf8'), first.key);
    if (process.platform !== 'win32') {
      assert.equal((await fs.stat(path.join(certDir, 'key.pem'))).mode & 0o777, 0o600);
    }
    const second = await loadOrMakeCertificate(certDir);
    assert.equal(second.cert, first.cert);
    assert.equal(second.key, first.key);
  });

  it('makes a new one when an extra name is not covered, then reuses that', async () => {
    const first = await loadOrMakeCertificate(dir);
    const second = await loadOrMakeCertificate(dir, ['sim.example']);
    assert.notEqual(second.cert, first.cert);
    assert.ok(new X509Certificate(second.cert).subjectAltName?.includes('DNS:sim.example'));
    const third = await loadOrMakeCertificate(dir, ['sim.example']);
    assert.equal(third.cert, second.cert);
  });

  it('remakes a missing key file', async () => {
    const first = await loadOrMakeCertificate(dir);
    await fs.rm(path.join(dir, 'key.pem'));
    const second = await loadOrMakeCertificate(dir);
    assert.notEqual(second.cert, first.cert);
    assert.equal(await fs.readFile(path.join(dir, 'key.pem'), 'utf8'), second.key);
  });

  it('does not reuse a certificate whose names merely contain the extra name', async () => {
    await loadOrMakeCertificate(dir);
    const second = await loadOrMakeCertificate(dir, ['host']);
    assert.equal(new X509Certificate(second.cert).checkHost('host'), 'host');
  });

  it('reuses a certificate that names an IPv6 extra name', async () => {
    const first = await loadOrMakeCertificate(dir, ['fe80::1']);
    const second = await loadOrMakeCertificate(dir, ['fe80::1']);
    assert.equal(second.cert, first.cert);
  });
});
