/**
 * The `iothub-connection` config node: owns one HubConnection and one identity's credentials, shared
 * by every node that points at it. Like the core MQTT broker node it keeps its users, connects on the
 * first register, disconnects after the last deregister, and pushes status to every user.
 */
import { readFileSync } from 'node:fs';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { parseConnectionString, type Identity } from '../iothub/connection-string';
import { HubError } from '../iothub/errors';
import { HubConnection, type HubConnectionOptions, type HubState, type Transport } from '../iothub/hub-connection';
import { closeWith, registerNode } from './adapter';
import { acquireLocalHub, type LocalHub } from './local-simulator';
import { describeIdentity } from '../iothub/log';
import { statusFor } from './status';

export interface ConnectionNodeDef extends NodeDef {
  mode?: 'local' | 'azure';
  transport?: Transport;
  caFile?: string;
  localPort?: number | string;
  tokenLifetime?: number | string;
  tokenRenewMargin?: number | string;
  reconnectMin?: number | string;
  reconnectMax?: number | string;
  throttleMin?: number | string;
  throttleMax?: number | string;
  idleTimeout?: number | string;
}

interface Credentials {
  connectionString?: string;
}

export type Role = 'local' | Identity['kind'] | 'invalid';

/** What the palette nodes see of their config node. */
export interface ConnectionNode extends Node<Credentials> {
  readonly mode: 'local' | 'azure';
  readonly role: Role;
  /** Why this config cannot connect at all (bad connection string, unreadable CA), if so. */
  readonly configError?: HubError;
  /** `status: false` for users that show a status of their own (telemetry-in shows its endpoint's). */
  register(user: Node, options?: { status?: boolean }): void;
  /** The options the shared connection uses (a second connection, to the built-in endpoint, reuses them). */
  connectionOptions(): Promise<HubConnectionOptions>;
  deregister(user: Node, done?: () => void): void;
  /** The shared connection, made on first use (local mode waits for the simulator). */
  connection(): Promise<HubConnection>;
  /** The local simulator this config uses, if in local mode. */
  localHub(): Promise<LocalHub | undefined>;
}

const ENV_REFERENCE = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/;

function num(value: number | string | undefined, fallback: number, min: number): number {
  const n = typeof value === 'number' ? value : value === undefined || value === '' ? NaN : Number(value);
  return Number.isFinite(n) && n >= min ? n : fallback;
}

export default function register(RED: NodeAPI): void {
  function IotHubConnectionNode(this: ConnectionNode & Record<string, unknown>, def: ConnectionNodeDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const mode: 'local' | 'azure' = def.mode === 'azure' ? 'azure' : 'local';
    const users = new Map<string, Node>();
    const quiet = new Set<string>();
    let identity: Identity | undefined;
    let configError: HubError | undefined;
    let hub: HubConnection | undefined;
    let opening: Promise<HubConnection> | undefined;
    let local: Promise<LocalHub> | undefined;
    let lastStatus = statusFor('idle');
    let warnedFor: string | undefined;

    const options: HubConnectionOptions = {
      transport: def.transport === 'amqpws' || def.transport === 'amqp' ? def.transport : 'amqps',
      tokenLifetimeSec: num(def.tokenLifetime, 3600, 5),
      tokenRenewMarginSec: num(def.tokenRenewMargin, 900, 1),
      reconnectMinMs: num(def.reconnectMin, 1000, 10),
      reconnectMaxMs: num(def.reconnectMax, 60_000, 100),
      throttleMinMs: num(def.throttleMin, 10_000, 10),
      throttleMaxMs: num(def.throttleMax, 60_000, 10),
      idleTimeoutMs: num(def.idleTimeout, 120_000, 0),
    };
    if ((options.reconnectMaxMs as number) < (options.reconnectMinMs as number)) options.reconnectMaxMs = options.reconnectMinMs;
    if ((options.throttleMaxMs as number) < (options.throttleMinMs as number)) options.throttleMaxMs = options.throttleMinMs;

    if (mode === 'azure') {
      let text = node.credentials?.connectionString ?? '';
      const env = ENV_REFERENCE.exec(text.trim());
      if (env) text = process.env[env[1]] ?? '';
      try {
        if (!text.trim()) throw new HubError('InvalidConnectionString', 'no connection string is set');
        // A hub policy string speaks for devices too (gateway); service nodes use it at hub level.
        identity = parseConnectionString(text, { gatewayPolicy: true });
      } catch (err) {
        const code = (err as { code?: string }).code ?? 'InvalidConnectionString';
        configError = new HubError(code, `connection string: ${(err as Error).message}`);
      }
      // The Event Hubs emulator form of the string means plain AMQP, as the Event Hubs SDKs read it.
      if (identity?.kind === 'eventhub' && identity.emulator) options.transport = 'amqp';
      if (def.caFile) {
        try {
          options.ca = readFileSync(def.caFile);
        } catch (err) {
          configError = new HubError('InvalidConfig', `cannot read the CA file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        }
      }
    }

    const role: Role = mode === 'local' ? 'local' : identity ? identity.kind : 'invalid';
    Object.defineProperty(node, 'mode', { value: mode });
    Object.defineProperty(node, 'role', { value: role });
    Object.defineProperty(node, 'configError', { get: () => configError });

    const push = (status: ReturnType<typeof statusFor>): void => {
      lastStatus = status;
      for (const user of users.values()) if (!quiet.has(user.id)) user.status(status);
    };

    // The identity and host, said once in the Node-RED log when the connection first opens.
    let connectedAs: string | undefined;
    let saidConnected = false;
    const onState = (state: HubState, error?: HubError): void => {
      push(statusFor(state, error));
      if (state === 'open' && !saidConnected && connectedAs) {
        saidConnected = true;
        node.log(`${RED._('iothub-connection.log.connected')}: ${connectedAs}`);
      }
      if (state === 'reconnecting' && error && warnedFor !== error.code) {
        // One warning per kind of trouble, not one per retry.
        warnedFor = error.code;
        node.warn(`${RED._('iothub-connection.warn.disconnected')}: ${error.code}: ${error.message}`);
      } else if (state === 'open' && warnedFor) {
        warnedFor = undefined;
        node.log(RED._('iothub-connection.log.reconnected'));
      }
    };

    node.localHub = (): Promise<LocalHub | undefined> => {
      if (mode !== 'local') return Promise.resolve(undefined);
      local ??= acquireLocalHub(num(def.localPort, 5672, 0));
      return local;
    };

    node.connection = (): Promise<HubConnection> => {
      if (configError) return Promise.reject(configError);
      if (!opening) {
        opening = (async () => {
          let made: HubConnection;
          const connectionOptions = await node.connectionOptions();
          if (mode === 'local') {
            const localHub = await (node.localHub() as Promise<LocalHub>);
            made = new HubConnection(localHub.identity, connectionOptions);
          } else {
            made = new HubConnection(identity as Identity, connectionOptions);
          }
          connectedAs = describeIdentity(made.identity);
          made.on('state', onState);
          made.on('error', () => undefined);
          hub = made;
          made.open();
          return made;
        })();
        opening.catch((err: unknown) => {
          opening = undefined;
          push(statusFor('reconnecting', err instanceof HubError ? err : new HubError('NotConnected', String((err as Error)?.message ?? err))));
        });
      }
      return opening;
    };

    node.connectionOptions = async (): Promise<HubConnectionOptions> => {
      if (mode !== 'local') return options;
      const localHub = await (node.localHub() as Promise<LocalHub>);
      return { ...options, transport: 'amqp', connectHost: '127.0.0.1', port: localHub.port };
    };

    node.register = (user: Node, registerOptions: { status?: boolean } = {}): void => {
      users.set(user.id, user);
      if (registerOptions.status === false) quiet.add(user.id);
      else user.status(configError ? statusFor('invalid', configError) : lastStatus);
      if (users.size === 1 && !configError) void node.connection().catch(() => undefined);
    };

    node.deregister = (user: Node, done?: () => void): void => {
      users.delete(user.id);
      quiet.delete(user.id);
      if (users.size > 0 || !hub) {
        done?.();
        return;
      }
      const closing = hub;
      hub = undefined;
      opening = undefined;
      lastStatus = statusFor('idle');
      closing.close().then(
        () => done?.(),
        () => done?.(),
      );
    };

    closeWith(node, () => {
      users.clear();
      const closing = hub;
      hub = undefined;
      opening = undefined;
      // HubConnection.close is bounded (10 s), inside Node-RED's 15 s budget.
      return closing?.close();
    });
  }

  registerNode(RED, 'iothub-connection', IotHubConnectionNode, { credentials: { connectionString: { type: 'password' } } });
}

module.exports = register;
module.exports.default = register;
