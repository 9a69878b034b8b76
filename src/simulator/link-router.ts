/**
 * Attach authorisation and routing: each link the client attaches is answered, checked against the
 * connection's tokens, and wired to the part that serves its address (D2C ingest, the C2D queues and
 * intake, feedback, the request/response nodes, the Event Hubs surface), or refused with the reason.
 * Link-level events (transfers, credit, outcomes, detach) are dispatched here to what the link was
 * wired to. Separate from the connection bookkeeping, which knows links only as entries to drop.
 */
import type * as rhea from 'rhea';
import { forgetDelivery, remoteAttach } from '../amqp/rhea-internals';
import { answerAttach, wrapInt, type AmqpError, type Outcome } from './amqp';
import { parseAddress, type Address } from './addresses';
import { requirementFor } from './auth';
import type { C2dQueues } from './c2d';
import type { C2dIntake } from './c2d-intake';
import { UNAUTHORIZED, type Connections, type ConnState, type Link, type LinkState, type Transport } from './connections';
import type { D2cIngest } from './d2c-ingest';
import type { DirectMethods } from './direct-methods';
import type { TwinLinks } from './twin-links';
import type { EventHubSurface } from './event-hub';
import type { FeedbackQueue } from './feedback';
import type { Ports } from './listeners';
import type { ManagementReplies } from './management-replies';
import type { SimulatorOptions } from './options';
import type { Registry } from './registry';
import type { HubStats } from './stats';

/**
 * The Event Hubs-compatible endpoint takes CBS only over SASL (ANONYMOUS, or MSSBCBS): the Service Bus
 * and Event Hubs AMQP guide ("Claims-based authorization": "the client ... must use SASL ANONYMOUS"),
 * and every Event Hubs SDK negotiates it (@azure/core-amqp ConnectionContextBase sets a user name so
 * rhea sends ANONYMOUS; .NET and uAMQP use MSSBCBS). The real service refuses the bare AMQP header at
 * once; the simulator shares its listener with the IoT Hub surface, which accepts no SASL, so it refuses
 * the first Event Hubs link instead.
 */
const SASL_REQUIRED: AmqpError = {
  condition: 'amqp:unauthorized-access',
  description: 'The Event Hubs-compatible endpoint requires SASL (ANONYMOUS, MSSBCBS or PLAIN) before AMQP; this connection skipped it.',
};

export interface LinkRouterParts {
  options: SimulatorOptions;
  registry: Registry;
  stats: HubStats;
  /** The bound ports, for redirects to the Event Hubs surface. */
  ports: Ports;
  connections: Connections;
  c2d: C2dQueues;
  feedback: FeedbackQueue;
  eventHub: EventHubSurface;
  d2c: Pick<D2cIngest, 'onTransfer'>;
  c2dIntake: Pick<C2dIntake, 'onSend'>;
  methods: DirectMethods;
  twinLinks: TwinLinks;
  replies: Pick<ManagementReplies, 'onCbsRequest' | 'onManagementRequest'>;
}

export class LinkRouter {
  constructor(private readonly parts: LinkRouterParts) {}

  onLinkOpen(ctx: rhea.EventContext, role: 'sender' | 'receiver'): void {
    const { options, stats, connections, replies } = this.parts;
    const link = (role === 'sender' ? ctx.sender : ctx.receiver) as Link;
    const conn = connections.stateOf(ctx.connection);
    const remote = remoteAttach(link);
    const addressText = (role === 'sender' ? remote.source?.address : remote.target?.address) ?? '';
    const address = parseAddress(addressText, options.hubName);
    answerAttach(link, this.maxMessageBytes(address));
    const state: LinkState = { link, role, address, addressText, session: ctx.session as rhea.Session };
    connections.addLink(conn, state);

    if (address.kind === 'cbs') {
      if (role === 'receiver') state.onMessage = (c) => replies.onCbsRequest(conn, state, c);
      stats.linksAttached++;
      return;
    }
    const requirement = requirementFor(address);
    if (!requirement) {
      stats.linksRefused++;
      connections.closeLink(state, { condition: 'amqp:not-found', description: `The address '${addressText.slice(0, 200)}' does not exist on this hub.` });
      return;
    }
    if (!conn.auth.allows(requirement, Date.now())) {
      stats.linksRefused++;
      connections.closeLink(state, UNAUTHORIZED(`No valid token on this connection allows access to '${addressText.slice(0, 200)}'.`));
      return;
    }
    state.requirement = requirement;
    const refusal = this.serveLink(conn, state);
    if (refusal) {
      stats.linksRefused++;
      connections.closeLink(state, refusal);
      return;
    }
    stats.linksAttached++;
  }

  /**
   * The max-message-size the hub answers an attach with. IoT Hub's documented limits: 256 KB device to
   * cloud, 64 KB cloud to device (MicrosoftDocs iot-hub-devguide-quotas-throttling.md). The Event Hubs
   * surface and the request/response nodes ($cbs, $management) answer with Event Hubs Standard's 1 MB
   * event limit (event-hubs-quotas.md); the value the hub itself sends there is UNVERIFIED, and the
   * official clients only need one to be present.
   */
  private maxMessageBytes(address: Address): number {
    const { options } = this.parts;
    switch (address.kind) {
      case 'd2c':
        return options.d2c.maxMessageBytes;
      case 'c2d':
      case 'devicebound':
      case 'feedback':
      case 'filenotifications':
        return options.c2d.maxMessageBytes;
      default:
        return 1024 * 1024;
    }
  }

  /** Wires an authorised link to what serves it, or returns why it cannot be served. */
  private serveLink(conn: ConnState, state: LinkState): AmqpError | undefined {
    const { registry, c2d, feedback, eventHub, d2c, c2dIntake, replies, methods, twinLinks } = this.parts;
    const { address, role } = state;
    const wrongRole = (): AmqpError => ({
      condition: 'amqp:not-allowed',
      description: `The address '${state.addressText.slice(0, 200)}' cannot be used in this direction.`,
    });
    switch (address.kind) {
      case 'd2c': {
        if (role !== 'receiver') return wrongRole();
        const missing = this.ensureDevice(address.deviceId, address.moduleId);
        if (missing) return missing;
        state.onMessage = (c) => d2c.onTransfer(address.deviceId, address.moduleId, c);
        return undefined;
      }
      case 'c2d': {
        if (role !== 'sender') return wrongRole();
        const missing = this.ensureDevice(address.deviceId, address.moduleId);
        if (missing) return missing;
        const sender = state.link as rhea.Sender;
        const device = registry.getDevice(address.deviceId);
        c2d.attachReceiver(address.deviceId, address.moduleId, device?.generationId ?? '', sender);
        state.onSendable = () => c2d.onSendable(sender);
        state.onOutcome = (delivery, outcome) => c2d.onOutcome(delivery, outcome);
        state.onClose = () => c2d.detachReceiver(sender);
        return undefined;
      }
      case 'methods': {
        // A pair of links on one address: the hub sends calls on its sender, takes answers on its
        // receiver (azure-iot-device-amqp amqp_device_method_client.js attaches both to
        // /devices/<id>/methods/devicebound).
        const missing = this.ensureDevice(address.deviceId, address.moduleId);
        if (missing) return missing;
        if (role === 'sender') {
          const sender = state.link as rhea.Sender;
          methods.attachRequests(address.deviceId, address.moduleId, sender);
          state.onSendable = () => methods.onSendable(sender);
          state.onClose = () => methods.detach(sender);
        } else {
          const receiver = state.link as rhea.Receiver;
          methods.attachResponses(address.deviceId, address.moduleId, receiver);
          state.onMessage = (c) => methods.onResponse(c);
          state.onClose = () => methods.detach(receiver);
        }
        return undefined;
      }
      case 'twin': {
        // A pair on one address: requests come on the hub's receiver, answers and desired patches go
        // out on its sender (amqp_twin_client.js attaches both to /devices/<id>/twin).
        const missing = this.ensureDevice(address.deviceId, address.moduleId);
        if (missing) return missing;
        const link = state.link;
        twinLinks.attach(address.deviceId, address.moduleId, link);
        if (role === 'sender') state.onSendable = () => twinLinks.onSendable(link as rhea.Sender);
        else state.onMessage = (c) => twinLinks.onRequest(c);
        state.onClose = () => twinLinks.detach(link);
        return undefined;
      }
      case 'devicebound':
        if (role !== 'receiver') return wrongRole();
        state.onMessage = (c) => c2dIntake.onSend(c);
        return undefined;
      case 'feedback': {
        if (role !== 'sender') return wrongRole();
        const sender = state.link as rhea.Sender;
        feedback.attach(sender);
        state.onSendable = () => feedback.onSendable();
        state.onOutcome = (delivery, outcome) => feedback.onOutcome(delivery, outcome);
        state.onClose = () => feedback.detach(sender);
        return undefined;
      }
      case 'filenotifications':
        // File uploads are out of scope: the link stays open and idle, as on a hub with no uploads.
        return role === 'sender' ? undefined : wrongRole();
      case 'builtin-partition':
      case 'builtin-management':
        return this.redirectFor(address, conn.transport);
      case 'eh-partition': {
        if (!conn.sasl) return SASL_REQUIRED;
        if (role !== 'sender') return wrongRole();
        const sender = state.link as rhea.Sender;
        const error = eventHub.attachReader(sender, address.consumerGroup, address.partition);
        if (error) return error;
        state.onSendable = () => eventHub.onSendable(sender);
        state.onClose = () => eventHub.detachReader(sender);
        return undefined;
      }
      case 'eh-management':
        if (!conn.sasl) return SASL_REQUIRED;
        if (role === 'receiver') state.onMessage = (c) => replies.onManagementRequest(conn, state, c);
        return undefined;
      default:
        return { condition: 'amqp:not-found', description: 'Unknown address.' };
    }
  }

  private ensureDevice(deviceId: string, moduleId?: string): AmqpError | undefined {
    const { registry } = this.parts;
    const device = registry.getDevice(deviceId);
    if (device && (moduleId === undefined || device.modules.has(moduleId))) return undefined;
    if (registry.mayAutoRegister(deviceId, moduleId)) {
      registry.ensure(deviceId, moduleId);
      return undefined;
    }
    return { condition: 'amqp:not-found', description: `The device '${deviceId}' is not registered.` };
  }

  /**
   * The built-in endpoint answers with a redirect to its Event Hubs-compatible surface, which this
   * simulator serves on the same listeners. The address keeps the literal `:<port>/<name>/$management`
   * form the Azure samples parse. Info keys are strings (rhea encodes error info maps that way);
   * clients read them by name either way.
   */
  private redirectFor(address: Address, transport: Transport): AmqpError {
    const { options, ports } = this.parts;
    // The Event Hubs surface is this same server: a plain-AMQP client (local development only; the
    // real hub has no plain port) is sent to the plain port, everyone else to AMQPS as on Azure.
    const plain = transport === 'amqp' && ports.amqp !== undefined;
    const port = plain ? (ports.amqp as number) : (ports.amqps ?? ports.amqp ?? 5671);
    const scheme = plain || ports.amqps === undefined ? 'amqp' : 'amqps';
    const host = options.hostName;
    const path =
      address.kind === 'builtin-partition'
        ? `${options.hubName}/ConsumerGroups/${address.consumerGroup}/Partitions/${address.partition}`
        : `${options.hubName}/$management`;
    return {
      condition: 'amqp:link:redirect',
      description: "An AMQP error occurred (condition='amqp:link:redirect').",
      info: {
        hostname: port === 5671 ? host : `${host}:${port}`,
        'network-host': host,
        port: wrapInt(port),
        address: `${scheme}://${host}:${port}/${path}`,
      },
    };
  }

  // Link-level events, dispatched to what serveLink wired each link to.

  /** A link detached or failed: it no longer serves anything. */
  onLinkGone(ctx: rhea.EventContext): void {
    const { connections } = this.parts;
    const link = ctx.sender ?? ctx.receiver;
    const state = link && connections.linkState(link);
    if (state) connections.linkGone(state);
  }

  onMessage(ctx: rhea.EventContext): void {
    const { connections } = this.parts;
    const state = ctx.receiver && connections.linkState(ctx.receiver);
    // What arrives after we closed the link, its session or the connection (or dropped the socket)
    // is not taken: its outcome could never reach the client, which will send it again.
    const live =
      state?.onMessage &&
      !connections.find(ctx.connection)?.dropped &&
      ctx.connection.is_open() &&
      (ctx.session as rhea.Session).is_open() &&
      state.link.is_open();
    if (!live) {
      // Not settled on the wire (nobody is there to hear it), but not left to fill the session's buffer.
      if (ctx.delivery) forgetDelivery(ctx.delivery);
      return;
    }
    (state.onMessage as (c: rhea.EventContext) => void)(ctx);
  }

  onSendable(ctx: rhea.EventContext): void {
    const state = ctx.sender && this.parts.connections.linkState(ctx.sender);
    state?.onSendable?.();
  }

  onOutcome(ctx: rhea.EventContext, outcome: Outcome): void {
    const state = ctx.sender && this.parts.connections.linkState(ctx.sender);
    if (state?.onOutcome && ctx.delivery) state.onOutcome(ctx.delivery, outcome);
  }
}
