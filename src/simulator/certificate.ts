/**
 * A self-signed certificate for the simulator's TLS listener, made with node:crypto alone so that the
 * package needs no OpenSSL binary and no extra dependency. The certificate names localhost, 127.0.0.1
 * and ::1 (plus any extra names), and is its own CA so that clients can trust it with `ca` or
 * NODE_EXTRA_CA_CERTS.
 */
import { generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';

function der(tag: number, content: Buffer): Buffer {
  const len = content.length;
  let header: Buffer;
  if (len < 0x80) header = Buffer.from([tag, len]);
  else if (len < 0x100) header = Buffer.from([tag, 0x81, len]);
  else if (len < 0x10000) header = Buffer.from([tag, 0x82, len >> 8, len & 0xff]);
  else throw new Error('DER content too long');
  return Buffer.concat([header, content]);
}

const seq = (...parts: Buffer[]): Buffer => der(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]): Buffer => der(0x31, Buffer.concat(parts));
const utf8 = (text: string): Buffer => der(0x0c, Buffer.from(text, 'utf8'));
const octets = (content: Buffer): Buffer => der(0x04, content);
const explicit = (n: number, content: Buffer): Buffer => der(0xa0 + n, content);

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const bytes = [parts[0] * 40 + parts[1]];
  for (const part of parts.slice(2)) {
    const chunk = [part & 0x7f];
    let rest = part >>> 7;
    while (rest > 0) {
      chunk.unshift((rest & 0x7f) | 0x80);
      rest >>>= 7;
    }
    bytes.push(...chunk);
  }
  return der(0x06, Buffer.from(bytes));
}

/** A DER INTEGER for an unsigned big-endian number: minimal, with a 0 byte only to keep it positive. */
export function positiveInteger(bytes: Buffer): Buffer {
  let start = 0;
  // DER forbids leading zero bytes ("illegal padding" to OpenSSL) unless the next byte's top bit is set.
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  const body = trimmed[0] & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed;
  return der(0x02, body);
}

function time(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  // UTCTime until 2049, GeneralizedTime after, as RFC 5280 requires.
  return date.getUTCFullYear() < 2050 ? der(0x17, Buffer.from(iso.slice(2), 'ascii')) : der(0x18, Buffer.from(iso, 'ascii'));
}

function subjectAltNames(names: string[]): Buffer {
  const entries = names.map((name) => {
    if (isIP(name) === 4) return der(0x87, Buffer.from(name.split('.').map(Number)));
    if (isIP(name) === 6) {
      const full = expandIpv6(name);
      return der(0x87, Buffer.from(full.flatMap((g) => [g >> 8, g & 0xff])));
    }
    return der(0x82, Buffer.from(name, 'ascii'));
  });
  return seq(...entries);
}

function expandIpv6(address: string): number[] {
  const [head, tail] = address.split('::');
  const left = head ? head.split(':').map((h) => parseInt(h, 16)) : [];
  const right = tail !== undefined && tail !== '' ? tail.split(':').map((h) => parseInt(h, 16)) : [];
  const middle = tail === undefined ? [] : new Array(8 - left.length - right.length).fill(0);
  return [...left, ...middle, ...right];
}

export interface Certificate {
  cert: string;
  key: string;
}

/** Makes a P-256 self-signed certificate valid for ten years. */
export function makeSelfSignedCertificate(extraNames: string[] = []): Certificate {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const name = seq(set(seq(oid('2.5.4.3'), utf8('IoT Hub simulator (local)'))));
  const ecdsaSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const now = new Date();
  const notBefore = new Date(now.getTime() - 24 * 3600 * 1000);
  const notAfter = new Date(now.getTime() + 10 * 365 * 24 * 3600 * 1000);
  const names = Array.from(new Set(['localhost', '127.0.0.1', '::1', ...extraNames]));
  const extensions = seq(
    seq(oid('2.5.29.19'), der(0x01, Buffer.from([0xff])), octets(seq(der(0x01, Buffer.from([0xff]))))),
    seq(oid('2.5.29.17'), octets(subjectAltNames(names))),
  );
  const serial = randomBytes(16);
  const tbs = seq(
    explicit(0, der(0x02, Buffer.from([2]))),
    positiveInteger(serial),
    ecdsaSha256,
    name,
    seq(time(notBefore), time(notAfter)),
    name,
    spki,
    der(0xa3, extensions),
  );
  const signature = sign('sha256', tbs, privateKey);
  const certDer = seq(tbs, ecdsaSha256, der(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const body = certDer
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trim();
  return {
    cert: `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`,
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/**
 * Reads `cert.pem` and `key.pem` from `dir`, or makes and stores them on first use, so that a
 * certificate a user trusted once stays valid across restarts.
 */
export async function loadOrMakeCertificate(dir: string, extraNames: string[] = []): Promise<Certificate> {
  const certPath = path.join(dir, 'cert.pem');
  const keyPath = path.join(dir, 'key.pem');
  try {
    const [cert, key] = await Promise.all([fs.readFile(certPath, 'utf8'), fs.readFile(keyPath, 'utf8')]);
    const x509 = new X509Certificate(cert);
    // A pair OpenSSL cannot load (damaged, or from an older buggy build) is made anew.
    createSecureContext({ cert, key, ca: cert });
    const stillValid = new Date(x509.validTo).getTime() > Date.now() + 24 * 3600 * 1000;
    const coversNames = extraNames.every((n) => (isIP(n) ? x509.checkIP(n) !== undefined : x509.checkHost(n) !== undefined));
    if (stillValid && coversNames) return { cert, key };
  } catch (err) {
    // Missing or unusable: make a new pair. Only a folder we may not touch is the user's to fix.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') throw err;
  }
  const made = makeSelfSignedCertificate(extraNames);
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(keyPath, made.key, { mode: 0o600 });
  await fs.writeFile(certPath, made.cert);
  return made;
}
