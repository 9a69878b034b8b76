/**
 * IoT Hub's service REST API, as far as the service nodes use it: invoke a direct method, read a twin,
 * update its desired properties (with an etag). IoT Hub serves it over HTTPS on the hub's host name
 * (443), authorised by a SAS token of a shared access policy in the Authorization header, and answers
 * failures with IoT Hub error codes (docs/METHODS-AND-TWINS.md §2 and §4; azure-iothub
 * common-http/rest_api_client.js and registry.js make the same requests).
 */
import * as https from 'node:https';
import { isPlainObject } from '../amqp/method-twin-wire';
import { HubError, type HubErrorCode } from './errors';
import { expiryIn, makeSasToken } from './sas';
import { namedTarget, type DeviceTarget, type TargetRequest } from './device';
import type { TwinProperties } from './device-twin';

/** The API version the service SDK sends (azure-iothub version.js). */
export const SERVICE_API_VERSION = '2021-04-12';

export interface ServiceEndpoint {
  /** The hub's host name, as tokens name it (no port). */
  host: string;
  /** Where to connect: the host name, or 127.0.0.1 for the local simulator. */
  connectHost?: string;
  port: number;
  policy: string;
  key: string;
  /** Certificates to trust (the local simulator's). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** How long a request may take before it fails with Timeout (ms). */
  timeoutMs: number;
}

export interface MethodInvocation {
  methodName: string;
  payload?: unknown;
  responseTimeoutInSeconds?: number;
  connectTimeoutInSeconds?: number;
}

export interface MethodResult {
  status: number;
  payload: unknown;
}

export interface ServiceTwin extends TwinProperties {
  etag: string;
  tags: Record<string, unknown>;
  version?: number;
}

/** HubError codes for IoT Hub's REST error names (ErrorCode.cs), else by HTTP status. */
const CODES: Record<string, HubErrorCode> = {
  DeviceNotOnline: 'DeviceNotOnline',
  GatewayTimeout: 'GatewayTimeout',
  DeviceNotFound: 'DeviceNotFound',
  ModuleNotFound: 'DeviceNotFound',
  PreconditionFailed: 'PreconditionFailed',
  MessageTooLarge: 'MessageTooLarge',
  ArgumentInvalid: 'ArgumentInvalid',
  IotHubFormatError: 'ArgumentInvalid',
  IotHubUnauthorizedAccess: 'Unauthorized',
  ThrottlingException: 'Throttled',
};

/**
 * IoT Hub's six-digit codes and their names (azure-iot-sdk-csharp iothub/service/src/Common/Exceptions/
 * ErrorCode.cs; 504101 GatewayTimeout from Azure docs, troubleshoot-error-codes.md, as ErrorCode.cs has no
 * 504 code). The body of an error carries the number, its header the name; either finds the other here.
 */
const NAMES: Record<number, string> = {
  400001: 'InvalidProtocolVersion',
  400004: 'ArgumentInvalid',
  400005: 'ArgumentNull',
  400006: 'IotHubFormatError',
  401002: 'IotHubUnauthorizedAccess',
  403002: 'IotHubQuotaExceeded',
  404001: 'DeviceNotFound',
  404010: 'ModuleNotFound',
  404103: 'DeviceNotOnline',
  409001: 'DeviceAlreadyExists',
  412001: 'PreconditionFailed',
  413001: 'MessageTooLarge',
  429001: 'ThrottlingException',
  500001: 'ServerError',
  503001: 'ServiceUnavailable',
  504101: 'GatewayTimeout',
};
const NUMBERS: Record<string, number> = Object.fromEntries(Object.entries(NAMES).map(([n, name]) => [name, Number(n)]));

function codeOf(status: number, name: string | undefined): HubErrorCode {
  if (name && CODES[name]) return CODES[name];
  if (status === 401 || status === 403) return 'Unauthorized';
  if (status === 404) return 'DeviceNotFound';
  if (status === 412) return 'PreconditionFailed';
  if (status === 413) return 'MessageTooLarge';
  if (status === 429) return 'Throttled';
  if (status === 504) return 'GatewayTimeout';
  if (status >= 500) return 'ServiceUnavailable';
  return 'ArgumentInvalid';
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return isPlainObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function sixDigits(value: unknown): number | undefined {
  const n = typeof value === 'string' && /^\d{6}$/.test(value) ? Number(value) : value;
  return typeof n === 'number' && Number.isInteger(n) && n >= 100000 && n <= 999999 ? n : undefined;
}

/**
 * The error of a failed call, with IoT Hub's six-digit code in `info.errorCode`, its name in
 * `info.errorName` and the HTTP status in `info.status`. IoT Hub writes the code in one of two bodies
 * and the name in the `iothub-errorcode` header (azure-iot-sdk-csharp common/src/service/
 * ExceptionHandlingHelper.cs GetExceptionCodeAsync, CommonConstants.cs HttpErrorCodeName):
 * - `{"Message":"{\"errorCode\":404103,\"trackingId\":..,\"message\":..,\"info\":{..}}","ExceptionMessage":""}`,
 *   the error as JSON inside the Message string (a method call on an offline device, azure-iot-sdk-csharp
 *   issue #3442);
 * - `{"Message":"ErrorCode:DeviceNotOnline;Timed out waiting for device to connect.","ExceptionMessage":..}`,
 *   the older one (azure-iot-sdk-java issue #85), which is all azure-iothub reads (http.js parseErrorBody).
 * A top-level errorCode and message, as no IoT Hub answer quoted by the SDKs has, is read last.
 */
export function errorOf(status: number, body: string, header: string | undefined): HubError {
  const outer = parseObject(body) ?? {};
  const Message = typeof outer.Message === 'string' ? outer.Message : undefined;
  const inner = Message === undefined ? undefined : parseObject(Message);
  const older = Message !== undefined && inner === undefined ? /^\s*ErrorCode:([A-Za-z]+);(.*)$/s.exec(Message) : null;
  const headerName = header !== undefined && /^[A-Za-z]+$/.test(header) ? header : undefined;
  const number = sixDigits(inner?.errorCode) ?? sixDigits(outer.errorCode);
  const name = headerName ?? (number === undefined ? undefined : NAMES[number]) ?? older?.[1];
  const errorCode = number ?? (name === undefined ? undefined : NUMBERS[name]);
  const said = typeof inner?.message === 'string' ? inner.message : (older?.[2] ?? (typeof outer.message === 'string' ? outer.message : undefined));
  const text = said ?? `HTTP ${status}`;
  const code = codeOf(status, name);
  const retryable = code === 'Throttled' || code === 'ServiceUnavailable';
  return new HubError(code, `IoT Hub answered ${status}${errorCode === undefined ? '' : ` (${errorCode})`}: ${text.slice(0, 300)}`, {
    retryable,
    info: { status, ...(errorCode === undefined ? {} : { errorCode }), ...(name === undefined ? {} : { errorName: name }) },
  });
}

function path(kind: 'methods' | 'twin', target: DeviceTarget): string {
  let p = `/twins/${encodeURIComponent(target.deviceId)}`;
  if (target.moduleId !== undefined) p += `/modules/${encodeURIComponent(target.moduleId)}`;
  if (kind === 'methods') p += '/methods';
  return `${p}?api-version=${SERVICE_API_VERSION}`;
}

export interface ServiceApiOptions {
  /**
   * Aborting it abandons every request of this ServiceApi still waiting (a flow closing): each fails at
   * once with Closed and its socket is destroyed; later calls fail the same way without being sent.
   */
  signal?: AbortSignal;
}

export class ServiceApi {
  constructor(
    private readonly endpoint: ServiceEndpoint,
    private readonly options: ServiceApiOptions = {},
  ) {}

  /** Invokes a direct method; resolves with the device's status and payload (any status, 404 included). */
  async invokeMethod(requested: TargetRequest, call: MethodInvocation): Promise<MethodResult> {
    const target = namedTarget(requested);
    if (typeof call.methodName !== 'string' || call.methodName.trim() === '')
      throw new HubError('ArgumentInvalid', "no method name: set msg.methodName or the node's Method");
    const body = {
      methodName: call.methodName,
      payload: call.payload === undefined ? null : call.payload,
      responseTimeoutInSeconds: call.responseTimeoutInSeconds ?? 30,
      connectTimeoutInSeconds: call.connectTimeoutInSeconds ?? 0,
    };
    // The request waits as long as the hub may: the device's time plus the connect time (device_method.js).
    const waitMs = (body.responseTimeoutInSeconds + body.connectTimeoutInSeconds) * 1000 + this.endpoint.timeoutMs;
    const answer = await this.call('POST', path('methods', target), body, {}, waitMs);
    if (!isPlainObject(answer) || typeof answer.status !== 'number') throw new HubError('InvalidMessage', 'IoT Hub answered the method call without a status');
    return { status: answer.status, payload: answer.payload ?? null };
  }

  async getTwin(requested: TargetRequest): Promise<ServiceTwin> {
    return twinOf(await this.call('GET', path('twin', namedTarget(requested)), undefined, {}, this.endpoint.timeoutMs));
  }

  /**
   * Patches desired properties (a JSON object; null removes a property). With an etag the hub refuses
   * the patch if the twin changed since (PreconditionFailed, 412); without one it applies it anyway.
   */
  async updateDesired(requested: TargetRequest, patch: unknown, etag?: string): Promise<ServiceTwin> {
    const target = namedTarget(requested);
    if (!isPlainObject(patch)) throw new HubError('InvalidPayload', 'a desired-properties patch must be a JSON object, e.g. {"setPoint": 21}');
    const ifMatch = etag === undefined || etag === '' ? '"*"' : `"${etag.replace(/^"(.*)"$/, '$1')}"`;
    return twinOf(await this.call('PATCH', path('twin', target), { properties: { desired: patch } }, { 'If-Match': ifMatch }, this.endpoint.timeoutMs));
  }

  /**
   * The registry's devices as the hub sends them, keys included (Azure REST reference "Devices - Get
   * Devices": `GET /devices?top=N`, at most 1,000; RegistryRead). Callers keep what they need of it.
   */
  async listDevices(top = 1000): Promise<unknown> {
    return this.call('GET', `/devices?top=${top}&api-version=${SERVICE_API_VERSION}`, undefined, {}, this.endpoint.timeoutMs);
  }

  private call(method: string, requestPath: string, body: unknown, headers: Record<string, string>, timeoutMs: number): Promise<unknown> {
    const e = this.endpoint;
    let text: string | undefined;
    try {
      text = body === undefined ? undefined : JSON.stringify(body);
    } catch (err) {
      return Promise.reject(new HubError('InvalidPayload', `the request cannot be written as JSON: ${(err as Error).message}`));
    }
    const signal = this.options.signal;
    const abandoned = (): HubError => new HubError('Closed', 'the request was abandoned: its node closed');
    if (signal?.aborted) return Promise.reject(abandoned());
    const token = makeSasToken({ resource: e.host, key: e.key, keyName: e.policy, expiry: expiryIn(3600) });
    return new Promise<unknown>((resolveCall, rejectCall) => {
      let settled = false;
      const onAbort = (): void => {
        reject(abandoned());
        request.destroy();
      };
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const resolve = (value: unknown): void => {
        if (finish()) resolveCall(value);
      };
      const reject = (error: HubError): void => {
        if (finish()) rejectCall(error);
      };
      const request = https.request(
        {
          host: e.connectHost ?? e.host,
          port: e.port,
          servername: e.host,
          path: requestPath,
          method,
          ca: e.ca,
          headers: {
            Authorization: token,
            ...(text === undefined ? {} : { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(Buffer.byteLength(text)) }),
            ...headers,
          },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (c: Buffer) => chunks.push(c));
          response.on('error', (err) => reject(new HubError('NotConnected', `the REST answer broke off: ${err.message}`, { retryable: true })));
          response.on('end', () => {
            const answer = Buffer.concat(chunks).toString('utf8');
            const status = response.statusCode ?? 0;
            if (status < 200 || status >= 300) {
              const header = response.headers['iothub-errorcode'];
              reject(errorOf(status, answer, typeof header === 'string' ? header : undefined));
              return;
            }
            try {
              resolve(answer.trim() === '' ? undefined : (JSON.parse(answer) as unknown));
            } catch {
              reject(new HubError('InvalidMessage', 'IoT Hub answered with something that is not JSON'));
            }
          });
        },
      );
      request.setTimeout(timeoutMs, () =>
        request.destroy(new HubError('Timeout', `IoT Hub did not answer within ${Math.round(timeoutMs / 1000)} s`, { retryable: true })),
      );
      request.on('error', (err: Error & { code?: string }) =>
        reject(
          err instanceof HubError
            ? err
            : new HubError('NotConnected', `cannot reach the IoT Hub REST API at ${e.host}: ${err.message}`, {
                retryable: true,
                ...(err.code ? { socketCode: err.code } : {}),
              }),
        ),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      request.end(text);
    });
  }
}

function twinOf(value: unknown): ServiceTwin {
  if (!isPlainObject(value)) throw new HubError('InvalidMessage', 'IoT Hub answered without a twin');
  const properties = isPlainObject(value.properties) ? value.properties : {};
  return {
    etag: typeof value.etag === 'string' ? value.etag : '',
    ...(typeof value.version === 'number' ? { version: value.version } : {}),
    tags: isPlainObject(value.tags) ? value.tags : {},
    desired: (isPlainObject(properties.desired) ? properties.desired : {}) as ServiceTwin['desired'],
    reported: (isPlainObject(properties.reported) ? properties.reported : {}) as ServiceTwin['reported'],
  };
}
