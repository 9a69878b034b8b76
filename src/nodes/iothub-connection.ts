/**
 * The `iothub-connection` config node: owns one HubConnection and one identity's credentials, shared
 * by every node that points at it. Like the core MQTT broker node it keeps its users, connects on the
 * first register, disconnects after the last deregister, and pushes status to every user.
 */
import { readFileSync } from 'node:fs';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { Identity } from '../iothub/connection-string';
import type { DeviceTarget } from '../iothub/device';
import { HubError } from '../iothub/errors';
import { HubConnection, type HubConnectionOptions, type HubState } from '../iothub/hub-connection';
import type { ServiceEndpoint } from '../iothub/service-api';
import { closeWith, registerNode } from './adapter';
import { registerConnectionEndpoints } from './connection-admin';
import { connectionConfig, localOptions, serviceEndpointOf, type ConnectionCredentials, type ConnectionSettings, type Role } from './connection-options';
import { acquireLocalHub, type LocalHub } from './local-simulator';
import { describeIdentity, log, reasonOf, redactSecrets } from '../iothub/log';
import { statusFor } from './status';

export type { Role } from './connection-options';

export interface ConnectionNodeDef extends NodeDef, ConnectionSettings {}

/** What the palette nodes see of their config node. */
export interface ConnectionNode extends Node<ConnectionCredentials> {
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
  /** Where the service REST API is and the policy that signs for it (service nodes). */
  serviceEndpoint(): Promise<ServiceEndpoint>;
  /**
   * Told the devices a device node acts for. In local mode the in-process simulator registers them at
   * once, as devices are registered on a real hub before any flow runs: a C2D message or a method call
   * sent right after deploy then finds its device even before that device's links are up. Elsewhere
   * (Azure, or a simulator of another process) it does nothing. Never rejects.
   */
  devicesNamed(targets: DeviceTarget[]): Promise<void>;
}

export default function register(RED: NodeAPI): void {
  function IotHubConnectionNode(this: ConnectionNode & Record<string, unknown>, def: ConnectionNodeDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const { mode, role, identity, options, localPort, configError } = connectionConfig(def, node.credentials, {
      env: process.env,
      readFile: (path) => readFileSync(path),
    });
    const users = new Map<string, Node>();
    const quiet = new Set<string>();
    let hub: HubConnection | undefined;
    let opening: Promise<HubConnection> | undefined;
    let local: Promise<LocalHub> | undefined;
    let lastStatus = statusFor('idle');
    /** Lost and told so in the log: the next open is told too. */
    let down = false;

    Object.defineProperty(node, 'mode', { value: mode });
    Object.defineProperty(node, 'role', { value: role });
    Object.defineProperty(node, 'configError', { value: configError });

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
      if (state === 'reconnecting' && error && !down) {
        // One warning per loss, with why it was lost (the AMQP condition is what a search finds); the
        // retries after it, failing for whatever reason, are the status's to show.
        down = true;
        const condition = error.condition ? ` (${error.condition})` : '';
        node.warn(`${RED._('iothub-connection.warn.disconnected')}: ${connectedAs ?? ''}: ${error.code}${condition}: ${redactSecrets(error.message)}`);
      } else if (state === 'open' && down) {
        down = false;
        node.log(`${RED._('iothub-connection.log.reconnected')}: ${connectedAs ?? ''}`);
      }
    };

    node.localHub = (): Promise<LocalHub | undefined> => {
      if (mode !== 'local') return Promise.resolve(undefined);
      local ??= acquireLocalHub(localPort);
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
          // The connection's last failure, not only this change's: retrying a host that does not resolve
          // goes through "connecting" each time, and the cause must stay on show.
          made.on('state', (state, error) => onState(state, error ?? made.error));
          made.on('error', (err) => log.node('connection error (its state tells the users): %s', reasonOf(err)));
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

    node.serviceEndpoint = async (): Promise<ServiceEndpoint> => {
      if (configError) throw configError;
      if (mode === 'local') {
        const localHub = (await node.localHub()) as LocalHub;
        return serviceEndpointOf(localHub.identity, undefined, localHub);
      }
      return serviceEndpointOf(identity as Identity, options.ca);
    };

    node.devicesNamed = async (targets: DeviceTarget[]): Promise<void> => {
      try {
        const simulator = (await node.localHub())?.hub;
        for (const t of targets) simulator?.registry.ensure(t.deviceId, t.moduleId);
      } catch (err) {
        // A simulator that did not start has failed the connection already; its users show that.
        log.node('devices not registered in the local simulator: %s', reasonOf(err));
      }
    };

    node.connectionOptions = async (): Promise<HubConnectionOptions> => {
      if (mode !== 'local') return options;
      const localHub = await (node.localHub() as Promise<LocalHub>);
      return localOptions(options, localHub.port);
    };

    node.register = (user: Node, registerOptions: { status?: boolean } = {}): void => {
      users.set(user.id, user);
      if (registerOptions.status === false) quiet.add(user.id);
      else user.status(configError ? statusFor('invalid', configError) : lastStatus);
      if (users.size === 1 && !configError)
        void node.connection().catch((err: unknown) => log.node('opening the shared connection failed (the status says why): %s', reasonOf(err)));
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
  registerConnectionEndpoints(RED);
}

module.exports = register;
module.exports.default = register;
