/**
 * Shared access signatures: made by the client, parsed and verified by the simulator.
 *
 * IoT Hub signs with the base64-decoded key; the Event Hubs-compatible endpoint signs with the key
 * string as UTF-8 text. Verification always HMACs the `sr` exactly as it came in the token, never a
 * re-encoded value, because SDKs differ in how they percent-encode it.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export type KeyEncoding = 'base64' | 'text';

export interface SasToken {
  /** `sr` as it appears in the token (URL-encoded). */
  rawResource: string;
  /** `sr` URL-decoded. */
  resource: string;
  /** Signature, URL-decoded base64. */
  signature: string;
  /** `se` as sent, decimal seconds. */
  rawExpiry: string;
  /** Expiry in seconds since the epoch. */
  expiry: number;
  keyName?: string;
}

export class SasError extends Error {
  readonly code = 'InvalidToken';
  constructor(message: string) {
    super(message);
    this.name = 'SasError';
  }
}

/** encodeURIComponent that also escapes `!'()*`, as the IoT SDKs do. */
export function encodeUriComponentStrict(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

function hmac(key: string, encoding: KeyEncoding, data: string): Buffer {
  const keyBytes = encoding === 'base64' ? Buffer.from(key, 'base64') : Buffer.from(key, 'utf8');
  return createHmac('sha256', keyBytes).update(data, 'utf8').digest();
}

export interface MakeSasOptions {
  /** Resource URI before encoding, e.g. `myhub.azure-devices.net/devices/d1`. */
  resource: string;
  key: string;
  /** Expiry in seconds since the epoch. */
  expiry: number;
  keyName?: string;
  encoding?: KeyEncoding;
}

export function makeSasToken(options: MakeSasOptions): string {
  const sr = encodeUriComponentStrict(options.resource);
  const se = String(Math.floor(options.expiry));
  const sig = hmac(options.key, options.encoding ?? 'base64', `${sr}\n${se}`).toString('base64');
  let token = `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}`;
  if (options.keyName) token += `&skn=${encodeURIComponent(options.keyName)}`;
  return token;
}

export function parseSasToken(token: string): SasToken {
  if (typeof token !== 'string') throw new SasError('token is not a string');
  const match = /^SharedAccessSignature\s+(.*)$/s.exec(token.trim());
  if (!match) throw new SasError('token does not start with "SharedAccessSignature"');
  const fields = new Map<string, string>();
  // Field order differs between SDKs, so read the token as a map.
  for (const pair of match[1].split('&')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new SasError('token has a field that is not name=value');
    fields.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  const rawResource = fields.get('sr');
  const rawSig = fields.get('sig');
  const rawExpiry = fields.get('se');
  if (!rawResource) throw new SasError('token has no "sr"');
  if (!rawSig) throw new SasError('token has no "sig"');
  if (!rawExpiry || !/^\d+$/.test(rawExpiry)) throw new SasError('token has no numeric "se"');
  const parsed: SasToken = {
    rawResource,
    resource: safeDecode(rawResource),
    signature: safeDecode(rawSig),
    rawExpiry,
    expiry: Number(rawExpiry),
  };
  const skn = fields.get('skn');
  if (skn) parsed.keyName = safeDecode(skn);
  return parsed;
}

function safeDecode(text: string): string {
  try {
    // C# encodes spaces as '+', which decodeURIComponent leaves alone.
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    throw new SasError('token has a field that is not URL-encoded');
  }
}

/** True when the signature was made with `key`. Expiry is checked separately. */
export function verifySasSignature(token: SasToken, key: string, encoding: KeyEncoding): boolean {
  const expected = hmac(key, encoding, `${token.rawResource}\n${token.rawExpiry}`);
  const given = Buffer.from(token.signature, 'base64');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Seconds since the epoch, `lifetimeSeconds` from now. */
export function expiryIn(lifetimeSeconds: number, now: number = Date.now()): number {
  return Math.floor(now / 1000) + Math.max(1, Math.floor(lifetimeSeconds));
}
