/**
 * The end-to-end pipeline the reliability suite and the soak drive: devices send telemetry (D2C) that
 * the hub stores and telemetry-in reads; c2d-send sends cloud-to-device messages (C2D) that the devices
 * receive. Everything runs in a real Node-RED runtime; the device side is device-out and device-in
 * nodes, or the core HubSender and HubReceiver on a gateway connection of their own. Every message is
 * booked in a Ledger, so that loss, unexpected repeats and reordering show up by id.
 */
import helper from 'node-red-node-test-helper';
import type { NodeMessage } from 'node-red';
import rhea = require('rhea');
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubConnection, type HubConnectionOptions } from '../../src/iothub/hub-connection';
import { HubReceiver, HubSender, type Received } from '../../src/iothub/links';
import connectionNode from '../../src/nodes/iothub-connection';
import c2dSendNode from '../../src/nodes/iothub-c2d-send';
import deviceInNode from '../../src/nodes/iothub-device-in';
import deviceOutNode from '../../src/nodes/iothub-device-out';
import feedbackInNode from '../../src/nodes/iothub-feedback-in';
import telemetryInNode from '../../src/nodes/iothub-telemetry-in';
import { stopLocalHubs } from '../../src/nodes/local-simulator';
import type { D2cEvent, SimulatedHub } from '../../src/simulator';
import { CONNECTION_FAULTS, inject, until, type Fault, type Injected } from './faults';
import { Ledger, problemsOf } from './ledger';

helper.init(require.resolve('node-red'));

export const NODE_MODULES = [connectionNode, c2dSendNode, telemetryInNode, deviceOutNode, deviceInNode, feedbackInNode];

const CONNECTED = 'node-red:common.status.connected';

interface FlowMsg extends NodeMessage {
  messageId?: string;
  deviceId?: string;
  partitionId?: string;
  sequenceNumber?: number;
  error?: { message: string; code?: string; source?: { id: string } };
}

interface HelperNode {
  on(event: 'input', listener: (msg: FlowMsg) => void): void;
  on(event: 'call:status', listener: (call: { args: Array<{ text?: string }> }) => void): void;
  receive(msg: object): void;
}

type FlowNode = Record<string, unknown> & { id: string; wires?: string[][] };

function nodeById(id: string): HelperNode {
  const node = helper.getNode(id) as unknown as HelperNode | null;
  if (!node) throw new Error(`node ${id} is not in the flow`);
  return node;
}

/** Which nodes in a flow play which part. */
export interface Roles {
  c2dSend: string;
  telemetryIn: string;
  /** Device nodes: absent when the core client plays the devices. */
  deviceOut?: string;
  /** Device id -> device-in node id. */
  deviceIns?: Record<string, string>;
}

/** The helper node that sees what `id` sends on. */
const seen = (id: string): string => `${id}-seen`;

/** Adds a helper on the output of each node that plays a part, and a Catch for every error. */
export function instrument(flow: FlowNode[], roles: Roles): FlowNode[] {
  const out = flow.map((n) => ({ ...n }));
  const tab = out.find((n) => n.type === 'tab')?.id;
  const watched = [roles.c2dSend, roles.telemetryIn, ...(roles.deviceOut ? [roles.deviceOut] : []), ...Object.values(roles.deviceIns ?? {})];
  for (const id of watched) {
    const node = out.find((n) => n.id === id);
    if (!node) throw new Error(`the flow has no node ${id}`);
    node.wires = [[...(node.wires?.[0] ?? []), seen(id)]];
    out.push({ id: seen(id), type: 'helper', z: tab, wires: [] });
  }
  // The test helper registers the Catch node once per Catch node in a flow, and a second one fails:
  // a flow that catches everything already is listened to there.
  const catchAll = out.find((n) => n.type === 'catch' && (n.scope === null || n.scope === undefined));
  if (catchAll) catchAll.wires = [[...(catchAll.wires?.[0] ?? []), 'reliability-caught']];
  else out.push({ id: 'reliability-catch', type: 'catch', z: tab, scope: null, uncaught: false, wires: [['reliability-caught']] });
  out.push({ id: 'reliability-caught', type: 'helper', z: tab, wires: [] });
  return out;
}

/** The device end of the pipeline: sends D2C, hands over C2D. */
export interface DeviceSide {
  sendD2c(deviceId: string, messageId: string): Promise<void>;
  onC2d(listener: (deviceId: string, messageId: string) => void): void;
  /** Called when the device side sees its connection go (whatever is in flight then may come twice). */
  onTrouble(listener: () => void): void;
  /** Attached and connected, as far as the device side can tell. */
  ready(): boolean;
  describe(): string;
  close(): Promise<void>;
}

/** The core client as the devices: one gateway HubConnection, a HubSender and HubReceiver per device. */
export class CoreDevices implements DeviceSide {
  private readonly connection: HubConnection;
  private readonly senders = new Map<string, HubSender>();
  private readonly receivers = new Map<string, HubReceiver>();
  private listener: (deviceId: string, messageId: string) => void = () => undefined;
  private trouble: () => void = () => undefined;

  constructor(hub: SimulatedHub, deviceIds: string[], options: HubConnectionOptions) {
    const identity = parseConnectionString(hub.serviceConnectionString('device'), { gatewayPolicy: true });
    this.connection = new HubConnection(identity, { transport: 'amqps', connectHost: '127.0.0.1', ca: hub.certificate?.cert, ...options });
    this.connection.on('state', (state: string) => {
      if (state === 'reconnecting') this.trouble();
    });
    for (const deviceId of deviceIds) {
      this.senders.set(deviceId, new HubSender(this.connection, `/devices/${deviceId}/messages/events`, { deviceId }, { maxPending: 100_000 }));
      const receiver = new HubReceiver(this.connection, `/devices/${deviceId}/messages/devicebound`, { deviceId }, { credit: 50, settle: 'auto' });
      receiver.on('message', (r: Received) => this.listener(deviceId, String(r.message.message_id)));
      this.receivers.set(deviceId, receiver);
    }
  }

  sendD2c(deviceId: string, messageId: string): Promise<void> {
    const sender = this.senders.get(deviceId);
    if (!sender) return Promise.reject(new Error(`no sender for ${deviceId}`));
    return sender.send({ message_id: messageId, body: rhea.message.data_section(Buffer.from(JSON.stringify({ id: messageId }))) } as rhea.Message);
  }

  onC2d(listener: (deviceId: string, messageId: string) => void): void {
    this.listener = listener;
  }

  onTrouble(listener: () => void): void {
    this.trouble = listener;
  }

  ready(): boolean {
    return this.connection.state === 'open' && [...this.senders.values(), ...this.receivers.values()].every((l) => l.isAttached);
  }

  describe(): string {
    const detached = [...this.senders.values(), ...this.receivers.values()].filter((l) => !l.isAttached).map((l) => l.address);
    return `core devices: connection ${this.connection.state}${detached.length > 0 ? `, detached ${detached.join(' ')}` : ''}`;
  }

  async close(): Promise<void> {
    await Promise.all([...this.senders.values(), ...this.receivers.values()].map((l) => l.close()));
    await this.connection.close();
  }
}

/** device-out and device-in nodes as the devices. */
export class NodeDevices implements DeviceSide {
  private readonly waiting = new Map<string, { resolve: () => void; reject: (err: unknown) => void }>();
  private listener: (deviceId: string, messageId: string) => void = () => undefined;
  private trouble: () => void = () => undefined;
  readonly statuses = new Map<string, string[]>();

  constructor(
    private readonly deviceOut: string,
    private readonly deviceIns: Record<string, string>,
  ) {
    nodeById(seen(deviceOut)).on('input', (msg) => this.settle(String(msg.messageId)));
    for (const [deviceId, id] of Object.entries(deviceIns)) nodeById(seen(id)).on('input', (msg) => this.listener(deviceId, String(msg.messageId)));
    for (const id of [deviceOut, ...Object.values(deviceIns)]) {
      const list: string[] = [];
      this.statuses.set(id, list);
      nodeById(id).on('call:status', (call) => {
        const text = String(call.args[0]?.text);
        list.push(text);
        if (text !== CONNECTED) this.trouble();
      });
    }
  }

  sendD2c(deviceId: string, messageId: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.set(messageId, { resolve, reject });
      nodeById(this.deviceOut).receive({ deviceId, messageId, payload: { id: messageId } });
    });
  }

  private settle(messageId: string, error?: unknown): void {
    const waiter = this.waiting.get(messageId);
    if (!waiter) return;
    this.waiting.delete(messageId);
    if (error === undefined) waiter.resolve();
    else waiter.reject(error);
  }

  /** An error at the Catch node: true if it was one of device-out's. */
  caught(msg: FlowMsg): boolean {
    if (msg.error?.source?.id !== this.deviceOut) return false;
    this.settle(String(msg.messageId), msg.error);
    return true;
  }

  onC2d(listener: (deviceId: string, messageId: string) => void): void {
    this.listener = listener;
  }

  onTrouble(listener: () => void): void {
    this.trouble = listener;
  }

  ready(): boolean {
    return [...this.statuses.values()].every((list) => list[list.length - 1] === CONNECTED);
  }

  describe(): string {
    return [...this.statuses].map(([id, list]) => `${id} ${list[list.length - 1] ?? 'no status'}`).join(', ');
  }

  async close(): Promise<void> {
    // The flow owns the nodes; unloading it closes them.
  }
}

export interface PipelineOptions {
  devices: string[];
  /** Who plays the devices: device-out and device-in nodes (default) or the core client. */
  deviceSide?: 'nodes' | 'core';
  /** Reconnect floor and cap for every client, ms. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Token lifetime and renewal margin for every client, s. */
  tokenLifetimeSec?: number;
  tokenRenewMarginSec?: number;
}

/** The test flow: service nodes on one connection, device nodes on another, each its own identity. */
function testFlow(hub: SimulatedHub, options: PipelineOptions): { flow: FlowNode[]; credentials: Record<string, Record<string, string>>; roles: Roles } {
  const connection: Record<string, unknown> = {
    type: 'iothub-connection',
    z: 'tab',
    mode: 'azure',
    transport: 'amqps',
    reconnectMin: options.reconnectMinMs ?? 50,
    reconnectMax: options.reconnectMaxMs ?? 500,
    // Throttling pauses as short as the reconnects here; the hub-like 10-60 s schedule is tested on its own.
    throttleMin: options.reconnectMinMs ?? 50,
    throttleMax: options.reconnectMaxMs ?? 500,
  };
  if (options.tokenLifetimeSec !== undefined) connection.tokenLifetime = options.tokenLifetimeSec;
  if (options.tokenRenewMarginSec !== undefined) connection.tokenRenewMargin = options.tokenRenewMarginSec;
  const flow: FlowNode[] = [
    { id: 'tab', type: 'tab', label: 'reliability' },
    { id: 'svc', ...connection },
    { id: 'c2d', type: 'iothub-c2d-send', z: 'tab', hub: 'svc', deviceIdType: 'str', maxPending: 100_000, wires: [[]] },
    { id: 'tin', type: 'iothub-telemetry-in', z: 'tab', hub: 'svc', startPosition: 'earliest', wires: [[]] },
  ];
  const credentials: Record<string, Record<string, string>> = { svc: { connectionString: hub.serviceConnectionString('iothubowner') } };
  const roles: Roles = { c2dSend: 'c2d', telemetryIn: 'tin' };
  if ((options.deviceSide ?? 'nodes') === 'nodes') {
    flow.push({ id: 'gw', ...connection });
    credentials.gw = { connectionString: hub.serviceConnectionString('device') };
    flow.push({ id: 'dout', type: 'iothub-device-out', z: 'tab', hub: 'gw', deviceIdType: 'str', maxPending: 100_000, wires: [[]] });
    roles.deviceOut = 'dout';
    roles.deviceIns = {};
    options.devices.forEach((deviceId, i) => {
      const id = `din${i}`;
      flow.push({ id, type: 'iothub-device-in', z: 'tab', hub: 'gw', deviceId, settle: 'auto', prefetch: 10, wires: [[]] });
      (roles.deviceIns as Record<string, string>)[deviceId] = id;
    });
  }
  return { flow, credentials, roles };
}

export class Pipeline {
  readonly d2c = new Ledger('D2C at the hub');
  readonly telemetry = new Ledger('telemetry-in');
  readonly c2d = new Ledger('C2D');
  /** Status texts of the service nodes, in order. */
  readonly statuses = new Map<string, string[]>();
  /** Errors at the Catch node that no ledger accounts for. */
  readonly unexpected: string[] = [];
  readonly faultsInjected: Array<{ fault: Fault; hits: number; inFlight: number }> = [];
  /** The sequence number telemetry-in must emit next, per partition (the hub is new: from 0). */
  private readonly nextSequence = new Map<string, number>();
  private readonly sequenceProblems: string[] = [];
  private readonly nextIndex = new Map<string, number>();
  private readonly onD2c = (info: D2cEvent): void => this.d2c.received(String(info.message.message_id));
  private closed = false;
  private devices!: DeviceSide;

  private constructor(
    readonly hub: SimulatedHub,
    readonly roles: Roles,
    readonly deviceIds: string[],
  ) {}

  /** The test flow against `hub`: service nodes and device nodes (or the core client) on their own connections. */
  static async start(hub: SimulatedHub, options: PipelineOptions): Promise<Pipeline> {
    const { flow, credentials, roles } = testFlow(hub, options);
    const core =
      options.deviceSide === 'core'
        ? () =>
            new CoreDevices(hub, options.devices, {
              reconnectMinMs: options.reconnectMinMs ?? 50,
              reconnectMaxMs: options.reconnectMaxMs ?? 500,
              throttleMinMs: options.reconnectMinMs ?? 50,
              throttleMaxMs: options.reconnectMaxMs ?? 500,
              ...(options.tokenLifetimeSec === undefined ? {} : { tokenLifetimeSec: options.tokenLifetimeSec }),
              ...(options.tokenRenewMarginSec === undefined ? {} : { tokenRenewMarginSec: options.tokenRenewMarginSec }),
            })
        : undefined;
    return Pipeline.load(hub, flow, credentials, roles, options.devices, core);
  }

  /** Any flow whose nodes play the parts in `roles` (the soak loads the end-to-end example). */
  static async load(
    hub: SimulatedHub,
    flow: FlowNode[],
    credentials: Record<string, Record<string, string>>,
    roles: Roles,
    deviceIds: string[],
    makeCore?: () => DeviceSide,
  ): Promise<Pipeline> {
    const pipeline = new Pipeline(hub, roles, deviceIds);
    hub.on('d2c', pipeline.onD2c);
    await helper.startServer();
    await helper.load(NODE_MODULES, instrument(flow, roles), credentials);
    if (makeCore) pipeline.devices = makeCore();
    else if (roles.deviceOut && roles.deviceIns) pipeline.devices = new NodeDevices(roles.deviceOut, roles.deviceIns);
    else throw new Error('no device side: give device nodes in the roles, or the core client');
    pipeline.wire();
    return pipeline;
  }

  private wire(): void {
    // A fault reaches each client a little after the hub acts: whatever a client still has in flight
    // when it sees its connection go is in flight at the fault too.
    for (const id of [this.roles.c2dSend, this.roles.telemetryIn]) {
      const list: string[] = [];
      this.statuses.set(id, list);
      nodeById(id).on('call:status', (call) => {
        const text = String(call.args[0]?.text);
        list.push(text);
        if (text !== CONNECTED) this.markFault();
      });
    }
    this.devices.onTrouble(() => this.markFault());
    nodeById(seen(this.roles.c2dSend)).on('input', (msg) => this.c2d.settled(String(msg.messageId)));
    nodeById('reliability-caught').on('input', (msg) => {
      if (msg.error?.source?.id === this.roles.c2dSend) this.c2d.settled(String(msg.messageId), msg.error);
      else if (!(this.devices instanceof NodeDevices && this.devices.caught(msg))) {
        this.unexpected.push(`${msg.error?.source?.id ?? '?'}: ${msg.error?.code ?? ''} ${msg.error?.message ?? ''}`);
      }
    });
    nodeById(seen(this.roles.telemetryIn)).on('input', (msg) => {
      this.telemetry.received(String(msg.messageId));
      const partition = String(msg.partitionId);
      const expected = this.nextSequence.get(partition) ?? 0;
      if (msg.sequenceNumber !== expected && this.sequenceProblems.length < 10) {
        this.sequenceProblems.push(`telemetry-in partition ${partition}: sequence ${String(msg.sequenceNumber)} where ${expected} was next`);
      }
      this.nextSequence.set(partition, Number(msg.sequenceNumber) + 1);
    });
    this.devices.onC2d((_deviceId, messageId) => this.c2d.received(messageId));
  }

  private lastStatus(id: string): string | undefined {
    const list = this.statuses.get(id);
    return list?.[list.length - 1];
  }

  /** Everything connected and attached: node statuses, the devices, the telemetry readers. */
  ready(): boolean {
    return (
      this.lastStatus(this.roles.c2dSend) === CONNECTED &&
      this.lastStatus(this.roles.telemetryIn) === CONNECTED &&
      this.devices.ready() &&
      this.hub.eventHub.readerCount === this.hub.partitions.length
    );
  }

  describeReadiness(): string {
    return `c2d-send ${this.lastStatus(this.roles.c2dSend)}, telemetry-in ${this.lastStatus(this.roles.telemetryIn)}, ${this.devices.describe()}, ${this.hub.eventHub.readerCount} partition readers`;
  }

  async waitReady(ms = 30_000): Promise<void> {
    await until(
      () => this.ready(),
      () => `the pipeline to be connected (${this.describeReadiness()})`,
      ms,
    );
  }

  /** Sends `count` messages per device in both directions, without waiting for them. */
  burst(count: number): void {
    for (let i = 0; i < count; i++) {
      for (const deviceId of this.deviceIds) {
        this.sendD2c(deviceId);
        this.sendC2d(deviceId);
      }
    }
  }

  private next(key: string): number {
    const n = this.nextIndex.get(key) ?? 0;
    this.nextIndex.set(key, n + 1);
    return n;
  }

  sendD2c(deviceId: string): void {
    const id = `d2c-${deviceId}-${this.next(`d2c/${deviceId}`)}`;
    this.d2c.sending(id, deviceId);
    this.telemetry.sending(id, deviceId);
    this.devices.sendD2c(deviceId, id).then(
      () => {
        this.d2c.settled(id);
        this.telemetry.settled(id);
      },
      (err: unknown) => {
        this.d2c.settled(id, err);
        this.telemetry.settled(id, err);
      },
    );
  }

  sendC2d(deviceId: string): void {
    const id = `c2d-${deviceId}-${this.next(`c2d/${deviceId}`)}`;
    this.c2d.sending(id, deviceId);
    nodeById(this.roles.c2dSend).receive({ deviceId, messageId: id, payload: { id } });
  }

  /** Books a fault that happens now by other means: what is in flight (or held locked) may repeat. */
  markFault(): number {
    const locked = this.hub.c2d.lockedMessageIds();
    const inFlight = this.d2c.fault() + this.c2d.fault(locked);
    this.telemetry.fault();
    return inFlight;
  }

  /** Injects a fault now, marking whatever is in flight (and every C2D message the hub holds locked). */
  fault(fault: Fault): Injected {
    const inFlight = this.markFault();
    const injected = inject(this.hub, fault);
    this.faultsInjected.push({ fault, hits: injected.hits, inFlight });
    return injected;
  }

  /**
   * Runs one fault while traffic flows: a first batch that must arrive; a second batch with the fault
   * striking inside the hub while it stores the middle of that batch (its settlement not yet sent);
   * a third batch sent during the outage; a fourth after recovery. Then everything must arrive.
   */
  async runFault(fault: Fault, perPhase: number, ms = 60_000): Promise<Injected> {
    await this.waitReady(ms);
    this.burst(perPhase);
    await this.drain(ms);
    const target = this.d2c.arrivals + Math.max(1, Math.floor((perPhase * this.deviceIds.length) / 2));
    let injected: Injected | undefined;
    const trigger = (): void => {
      if (injected || this.d2c.arrivals < target) return;
      this.hub.off('d2c', trigger);
      injected = this.fault(fault);
    };
    this.hub.on('d2c', trigger);
    this.burst(perPhase);
    await until(
      () => injected !== undefined,
      () => `the fault trigger (${this.d2c.arrivals} of ${target} stored)`,
      ms,
    );
    const fired = injected as Injected;
    const statusesBefore = new Map([...this.statuses].map(([id, list]) => [id, list.length]));
    this.burst(perPhase);
    await fired.over;
    await this.waitReady(ms);
    this.burst(perPhase);
    await this.drain(ms);
    if (CONNECTION_FAULTS.has(fault)) {
      for (const [id, list] of this.statuses) {
        const after = list.slice(statusesBefore.get(id) ?? 0);
        if (!after.some((s) => s !== CONNECTED))
          this.unexpected.push(`${id} never showed the connection loss (statuses after the fault: ${after.join(', ') || 'none'})`);
      }
    }
    return fired;
  }

  /** Every send settled and every message arrived everywhere. */
  drained(): boolean {
    return this.d2c.allSettled() && this.c2d.allSettled() && this.d2c.allArrived() && this.telemetry.allArrived() && this.c2d.allArrived();
  }

  describeDrain(): string {
    return (
      `D2C pending ${this.d2c.pendingCount}, missing at the hub ${this.d2c.missing().length} (${this.d2c.missing().slice(0, 5).join(' ')}), ` +
      `at telemetry-in ${this.telemetry.missing().length}; C2D pending ${this.c2d.pendingCount}, missing ${this.c2d.missing().length} ` +
      `(${this.describeReadiness()})`
    );
  }

  async drain(ms = 60_000): Promise<void> {
    await until(
      () => this.drained(),
      () => `every message: ${this.describeDrain()}`,
      ms,
    );
  }

  problems(options: { order?: boolean } = {}): string[] {
    const order = options.order ?? true;
    return [
      ...problemsOf('D2C', this.d2c.report(), { order }),
      ...problemsOf('telemetry-in', this.telemetry.report(), { order }),
      ...problemsOf('C2D', this.c2d.report(), { order: false }),
      // Telemetry-in must emit every stored event once per partition: sequence numbers 0, 1, 2, ...
      ...this.sequenceProblems,
      ...this.unexpected,
    ];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.hub.off('d2c', this.onD2c);
    await this.devices?.close();
    await helper.unload();
    await helper.stopServer();
    await stopLocalHubs();
  }
}
