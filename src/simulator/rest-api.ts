/**
 * IoT Hub's service REST surface over HTTPS, as far as the simulator serves it: direct-method calls,
 * and whatever else registers a route (twins, the registry). Every request is authorised by the SAS
 * token in its Authorization header, as the service SDKs send it (azure-iothub
 * common-http/rest_api_client.js `executeApiCall`), checked against the hub's shared access policies.
 * Separate from the AMQP listeners: the real hub serves this on 443, beside AMQP over WebSockets.
 */
import { randomUUID } from 'node:crypto';
import * as https from 'node:https';
import type * as http from 'node:http';
import type * as net from 'node:net';
import { grantFromToken, AuthError, type TokenContext } from './auth';
import type { Certificate } from './certificate';
import type { Right } from './registry';
import { ServiceError } from './service-errors';
import { reason, simLog } from './log';

/**
 * Largest request body taken. Method payloads are at most 128 KB and twin sections 32 KB each (see
 * src/amqp/method-twin-wire.ts); a body past this is refused (413) as soon as it is past, and the rest is read and dropped.
 */
const MAX_BODY_BYTES = 256 * 1024;

export interface RestRequest {
  method: string;
  /** Path segments after the route's fixed words, URL-decoded. */
  params: string[];
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** The parsed JSON body (undefined when the request had none). */
  body: unknown;
}

export interface RestResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface Route {
  method: string;
  /** Path pattern segments: fixed words compare case-insensitively, `*` takes one id. */
  pattern: string[];
  /**
   * The right a policy token needs (any one of a list) (Azure docs, iot-hub-dev-guide-sas.md "Access control and
   * permissions": RegistryRead/RegistryWrite for the identity registry, ServiceConnect for the
   * service-facing endpoints, which invoke methods and read and write twins).
   */
  right: Right | Right[];
  handle(request: RestRequest): Promise<RestResponse> | RestResponse;
}

export class RestApi {
  private readonly routes: Route[] = [];
  private server: https.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly tokenContext: () => TokenContext) {}

  add(...routes: Route[]): void {
    this.routes.push(...routes);
  }

  async listen(host: string, port: number, certificate: Certificate): Promise<number> {
    const server = https.createServer({ cert: certificate.cert, key: certificate.key }, (req, res) => {
      this.serve(req, res).catch((err: unknown) => {
        simLog.socket('REST request failed: %s', reason(err));
        if (!res.headersSent) {
          const error = new ServiceError(500, 500001, 'ServerError', 'The simulator failed to handle the request.');
          this.write(res, 500, error.body(randomUUID()), error.headers());
        }
      });
    });
    server.on('tlsClientError', (err) => simLog.socket('REST TLS handshake failed: %s', reason(err)));
    server.on('connection', (socket: net.Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.server = server;
    return new Promise<number>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(err.code === 'EADDRINUSE' ? `port ${port} on ${host} is already in use` : `cannot listen on port ${port}: ${err.message}`)),
      );
      server.listen(port, host, () => resolve((server.address() as net.AddressInfo).port));
    });
  }

  unref(): void {
    this.server?.unref();
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const trackingId = randomUUID();
    const url = new URL(req.url ?? '/', 'https://hub');
    const segments = url.pathname
      .split('/')
      .filter((s) => s !== '')
      .map((s) => {
        try {
          return decodeURIComponent(s);
        } catch {
          return s;
        }
      });
    const method = (req.method ?? 'GET').toUpperCase();
    const matches = this.routes.filter((r) => matchPattern(r.pattern, segments) !== undefined);
    const route = matches.find((r) => r.method === method);
    const fail = (error: ServiceError): void => this.write(res, error.httpStatus, error.body(trackingId), error.headers());
    if (!route) {
      req.resume();
      if (matches.length > 0) fail(new ServiceError(405, 405001, 'MethodNotAllowed', `${method} is not allowed on this resource.`));
      else fail(new ServiceError(404, 404000, 'NotFound', 'The resource does not exist on this hub.'));
      return;
    }
    // Every call of the service SDKs carries api-version (azure-iothub version.js versionQueryString);
    // the hub refuses one without it with 400001 InvalidProtocolVersion (IotHubServiceErrorCode.cs).
    if (!url.searchParams.get('api-version')) {
      req.resume();
      fail(new ServiceError(400, 400001, 'InvalidProtocolVersion', 'The api-version query parameter is required.'));
      return;
    }
    const refusal = this.authorise(req.headers.authorization, route.right);
    if (refusal) {
      req.resume();
      fail(refusal);
      return;
    }
    let body: unknown;
    try {
      body = await readJson(req);
    } catch (err) {
      fail(err instanceof ServiceError ? err : new ServiceError(400, 400006, 'IotHubFormatError', 'The request body could not be read.'));
      return;
    }
    try {
      const answer = await route.handle({
        method,
        params: matchPattern(route.pattern, segments) as string[],
        query: url.searchParams,
        headers: req.headers,
        body,
      });
      this.write(res, answer.status, answer.body === undefined ? '' : JSON.stringify(answer.body), answer.headers);
    } catch (err) {
      if (err instanceof ServiceError) fail(err);
      else throw err;
    }
  }

  /** The SAS token must be a policy's, for the whole hub, with the route's right. */
  private authorise(header: string | undefined, wanted: Right | Right[]): ServiceError | undefined {
    const rights = Array.isArray(wanted) ? wanted : [wanted];
    // IoT Hub answers a missing or bad token with 401 and 401002 IotHubUnauthorizedAccess (IotHubServiceErrorCode.cs).
    const unauthorized = (why: string): ServiceError => new ServiceError(401, 401002, 'IotHubUnauthorizedAccess', `Unauthorized: ${why}.`);
    if (!header) return unauthorized('no Authorization header');
    let grant;
    try {
      grant = grantFromToken(header, this.tokenContext());
    } catch (err) {
      return unauthorized(err instanceof AuthError ? err.message : 'the token is not valid');
    }
    if (grant.eventHub || grant.signer.type !== 'policy' || grant.scope.length > 0)
      return unauthorized('the token is not a shared access policy token for the hub');
    if (!rights.some((r) => grant.rights.has(r))) return unauthorized(`the policy ${grant.signer.name} lacks the ${rights.join(' or ')} permission`);
    return undefined;
  }

  private write(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, {
      ...(body === '' ? {} : { 'Content-Type': 'application/json; charset=utf-8' }),
      'Content-Length': String(Buffer.byteLength(body)),
      ...headers,
    });
    res.end(body);
  }
}

/** The `*` segments of a path that fits the pattern, or undefined. */
function matchPattern(pattern: string[], segments: string[]): string[] | undefined {
  if (pattern.length !== segments.length) return undefined;
  const params: string[] = [];
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] === '*') params.push(segments[i]);
    else if (pattern[i].toLowerCase() !== segments[i].toLowerCase()) return undefined;
  }
  return params;
}

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise<unknown>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (size > MAX_BODY_BYTES) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        // 413001 MessageTooLarge (ErrorCode.cs). The 413 is written at once; the rest of the body is read
        // and dropped (Node's server drains an unread request after its response), not cut off: a reset
        // socket would reach the client as ECONNRESET instead of the 413.
        chunks.length = 0;
        reject(new ServiceError(413, 413001, 'MessageTooLarge', `The request body is larger than ${MAX_BODY_BYTES} bytes.`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') {
        resolve(undefined);
        return;
      }
      try {
        resolve(JSON.parse(text));
      } catch {
        // 400006 IotHubFormatError: "a JSON object ... cannot be parsed" (IotHubServiceErrorCode.cs).
        reject(new ServiceError(400, 400006, 'IotHubFormatError', 'The request body is not valid JSON.'));
      }
    });
  });
}
