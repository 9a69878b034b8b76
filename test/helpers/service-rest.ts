/**
 * Points the official service SDK's REST calls at a test simulator. IoT Hub serves its REST API on 443
 * of the hub's host name, and azure-iothub has no port option: its HTTP layer hands the connection
 * string's host name to https.request as the host (common-http/http.js `buildRequest`; a port is taken
 * only from request options, which Client and Registry never pass). So the SDK is given, through its
 * own `setOptions` hook, an agent that connects to the simulator's REST port instead; everything above
 * the socket (paths, headers, SAS token, TLS with the simulator's certificate) is the SDK's own.
 */
import * as https from 'node:https';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import { Client as ServiceClient, Registry } from 'azure-iothub';
import type { SimulatedHub } from '../../src/simulator';

type ConnectionOptions = tls.ConnectionOptions & net.TcpNetConnectOpts;

/** An agent whose every connection goes to the simulator's REST listener on loopback. */
class SimulatorAgent extends https.Agent {
  constructor(private readonly port: number) {
    super({ keepAlive: false });
  }

  override createConnection(options: ConnectionOptions, callback?: (err: Error | null, socket: net.Socket) => void): net.Socket {
    const base = https.Agent.prototype as unknown as { createConnection(o: ConnectionOptions, cb?: typeof callback): net.Socket };
    return base.createConnection.call(this, { ...options, host: '127.0.0.1', port: this.port, servername: 'localhost' }, callback);
  }
}

interface WithRestClient {
  _restApiClient: { setOptions(options: { http: { agent: https.Agent } }): void };
}

function reach<T>(client: T, hub: SimulatedHub): T {
  const port = hub.ports.rest;
  if (port === undefined) throw new Error('start the test hub with restPort: 0');
  (client as unknown as WithRestClient)._restApiClient.setOptions({ http: { agent: new SimulatorAgent(port) } });
  return client;
}

/** azure-iothub's Client, for invokeDeviceMethod (REST) and C2D (AMQP on the same connection string). */
export function serviceClient(hub: SimulatedHub, policy = 'iothubowner'): ServiceClient {
  return reach(ServiceClient.fromConnectionString(hub.serviceConnectionString(policy)), hub);
}

/** azure-iothub's Registry (devices and twins over REST). */
export function registryClient(hub: SimulatedHub, policy = 'iothubowner'): Registry {
  return reach(Registry.fromConnectionString(hub.serviceConnectionString(policy)), hub);
}

/** The six-digit codes of ErrorCode.cs (azure-iot-sdk-csharp iothub/service/src/Common/Exceptions) the simulator uses. */
const CSHARP_ERROR_CODES: Record<string, number> = {
  InvalidProtocolVersion: 400001,
  ArgumentInvalid: 400004,
  IotHubFormatError: 400006,
  IotHubUnauthorizedAccess: 401002,
  DeviceNotFound: 404001,
  ModuleNotFound: 404010,
  DeviceNotOnline: 404103,
  DeviceAlreadyExists: 409001,
  ModuleAlreadyExistsOnDevice: 409301,
  PreconditionFailed: 412001,
  MessageTooLarge: 413001,
  ServerError: 500001,
  ServiceUnavailable: 503001,
};

/**
 * The error code a C# service client takes from an error answer, worked out the way its
 * ExceptionHandlingHelper.GetExceptionCodeAsync does (azure-iot-sdk-csharp common/src/service): the
 * number from the JSON inside the body's Message (or, when Message is not JSON, the name after
 * `ErrorCode:` in its first `;` field), accepted only if the iothub-errorcode header names the same code;
 * anything else is 'InvalidErrorCode'. 504101 is absent from ErrorCode.cs, so it is given here as the
 * body's number with the header's name for the test to compare.
 */
export function serviceErrorCode(body: string | undefined, header: unknown): { errorCode: number | 'InvalidErrorCode'; header?: string } {
  const name = typeof header === 'string' ? header : undefined;
  let number: number | undefined;
  try {
    const message = (JSON.parse(body ?? '') as { Message?: unknown }).Message;
    if (typeof message === 'string') {
      try {
        const inner = JSON.parse(message) as { errorCode?: unknown };
        number = Number(inner.errorCode);
      } catch {
        const first = message.split(';')[0];
        if (/errorcode/i.test(first) && first.includes(':')) number = CSHARP_ERROR_CODES[first.split(':')[1]];
      }
    }
  } catch {
    number = undefined;
  }
  const expected = name === 'GatewayTimeout' ? 504101 : name === undefined ? undefined : CSHARP_ERROR_CODES[name];
  const matched = number !== undefined && Number.isInteger(number) && expected === number;
  return { errorCode: matched ? (number as number) : 'InvalidErrorCode', ...(name === undefined ? {} : { header: name }) };
}
