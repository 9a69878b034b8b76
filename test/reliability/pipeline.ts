/**
 * The end-to-end pipeline the reliability suite and the soak drive: devices send telemetry (D2C) that
 * the hub stores and telemetry-in reads; c2d-send sends cloud-to-device messages (C2D) that the devices
 * receive. Service-side nodes run in a real Node-RED runtime; the device side is pluggable (the core
 * HubSender and HubReceiver on a gateway connection, or the device nodes). Every message is booked in
 * a Ledger, so that loss, unexpected repeats and reordering show up by id.
 */
import helper from 'node-red-node-test-helper';
import type { NodeMessage } from 'node-red';
import rhea = require('rhea');
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubConnection, type HubConnectionOptions } from '../../src/iothub/hub-connection';
import { HubReceiver, HubSender, type Received } from '../../src/iothub/links';
import connectionNode from '../../src/nodes/iothub-connection';
import c2dSendNode from '../../src/nodes/iothub-c2d-send';
import telemetryInNode from '../../src/nodes/iothub-telemetry-in';
import { stopLocalHubs } from '../../src/nodes/local-simulator';
import type { D2cEvent, SimulatedHub } from '../../src/simulator';
import { CONNECTION_FAULTS, inject, until, type Fault, type Injected } from './faults';
import { Ledger, problemsOf } from './ledger';

helper.init(require.resolve('node-red'));

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

function nodeById(id: string): HelperNode {
  const node = helper.getNode(id) as unknown as HelperNode | null;
  if (!node) throw new Error(`node ${id} is not in the flow`);
  return node;
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
    const identity = parseConnectionString(hub.serviceConnectionString('iothubowner'), { gatewayPolicy: true });
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

export interface PipelineOptions {
  devices: string[];
  /** Reconnect floor and cap for every client, ms. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Token lifetime and renewal margin for every client, s. */
  tokenLifetimeSec?: number;
  tokenRenewMarginSec?: number;
}

export class Pipeline {
  readonly d2c = new Ledger('D2C at the hub');
  readonly telemetry = new Ledger('telemetry-in');
  readonly c2d = new Ledger('C2D');
  /** Status texts per node, in order. */
  readonly statuses = new Map<string, string[]>();
  /** Sequence numbers telemetry-in emitted, per partition. */
  private readonly telemetrySequences = new Map<string, number[]>();
  private readonly nextIndex = new Map<string, number>();
  private readonly onD2c = (info: D2cEvent): void => this.d2c.received(String(info.message.message_id));
  private closed = false;
  readonly faultsInjected: Array<{ fault: Fault; hits: number; inFlight: number }> = [];

  private constructor(
    readonly hub: SimulatedHub,
    readonly devices: DeviceSide,
    readonly options: PipelineOptions,
  ) {}

  /** Loads the service-side flow (c2d-send, telemetry-in) and connects the devices. */
  static async start(hub: SimulatedHub, options: PipelineOptions, makeDevices?: (hub: SimulatedHub) => DeviceSide): Promise<Pipeline> {
    const min = options.reconnectMinMs ?? 50;
    const max = options.reconnectMaxMs ?? 500;
    const tokens: HubConnectionOptions = {};
    const tokenSettings: Record<string, number> = {};
    if (options.tokenLifetimeSec !== undefined) {
      tokens.tokenLifetimeSec = options.tokenLifetimeSec;
      tokenSettings.tokenLifetime = options.tokenLifetimeSec;
    }
    if (options.tokenRenewMarginSec !== undefined) {
      tokens.tokenRenewMarginSec = options.tokenRenewMarginSec;
      tokenSettings.tokenRenewMargin = options.tokenRenewMarginSec;
    }
    const devices = makeDevices?.(hub) ?? new CoreDevices(hub, options.devices, { reconnectMinMs: min, reconnectMaxMs: max, ...tokens });
    const pipeline = new Pipeline(hub, devices, options);
    hub.on('d2c', pipeline.onD2c);
    await helper.startServer();
    const flow = [
      { id: 'tab', type: 'tab', label: 'reliability' },
      { id: 'svc', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: min, reconnectMax: max, ...tokenSettings },
      { id: 'c2d', type: 'iothub-c2d-send', z: 'tab', hub: 'svc', deviceIdType: 'str', maxPending: 100_000, wires: [['c2dOut']] },
      { id: 'c2dOut', type: 'helper', z: 'tab', wires: [] },
      { id: 'tin', type: 'iothub-telemetry-in', z: 'tab', hub: 'svc', startPosition: 'earliest', wires: [['tinOut']] },
      { id: 'tinOut', type: 'helper', z: 'tab', wires: [] },
      { id: 'catchAll', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab', wires: [] },
    ];
    await helper.load([connectionNode, c2dSendNode, telemetryInNode], flow, { svc: { connectionString: hub.serviceConnectionString('iothubowner') } });
    pipeline.wire();
    return pipeline;
  }

  private wire(): void {
    // A fault reaches each client a little after the hub acts: whatever a client still has in flight
    // when it sees its connection go is in flight at the fault too.
    for (const id of ['c2d', 'tin']) {
      const seen: string[] = [];
      this.statuses.set(id, seen);
      nodeById(id).on('call:status', (call) => {
        const text = String(call.args[0]?.text);
        seen.push(text);
        if (text !== CONNECTED) this.markFault();
      });
    }
    this.devices.onTrouble(() => this.markFault());
    nodeById('c2dOut').on('input', (msg) => this.c2d.settled(String(msg.messageId)));
    nodeById('caught').on('input', (msg) => {
      if (msg.error?.source?.id === 'c2d') this.c2d.settled(String(msg.messageId), msg.error);
      else this.unexpected.push(`${msg.error?.source?.id ?? '?'}: ${msg.error?.code ?? ''} ${msg.error?.message ?? ''}`);
    });
    nodeById('tinOut').on('input', (msg) => {
      this.telemetry.received(String(msg.messageId));
      const list = this.telemetrySequences.get(String(msg.partitionId)) ?? [];
      list.push(Number(msg.sequenceNumber));
      this.telemetrySequences.set(String(msg.partitionId), list);
    });
    this.devices.onC2d((_deviceId, messageId) => this.c2d.received(messageId));
  }

  /** Errors at the Catch node that no ledger accounts for. */
  readonly unexpected: string[] = [];

  private lastStatus(id: string): string | undefined {
    const seen = this.statuses.get(id);
    return seen?.[seen.length - 1];
  }

  /** Everything connected and attached: node statuses, the devices, the telemetry readers. */
  ready(): boolean {
    return (
      this.lastStatus('c2d') === CONNECTED &&
      this.lastStatus('tin') === CONNECTED &&
      this.devices.ready() &&
      this.hub.eventHub.readerCount === this.hub.partitions.length
    );
  }

  describeReadiness(): string {
    return `c2d-send ${this.lastStatus('c2d')}, telemetry-in ${this.lastStatus('tin')}, ${this.devices.describe()}, ${this.hub.eventHub.readerCount} partition readers`;
  }

  async waitReady(ms = 30_000): Promise<void> {
    await until(() => this.ready(), () => `the pipeline to be connected (${this.describeReadiness()})`, ms);
  }

  /** Sends `count` messages per device in both directions, without waiting for them. */
  burst(count: number): void {
    for (let i = 0; i < count; i++) {
      for (const deviceId of this.options.devices) {
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
    nodeById('c2d').receive({ deviceId, messageId: id, payload: { id } });
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
    const target = this.d2c.arrivals + Math.max(1, Math.floor((perPhase * this.options.devices.length) / 2));
    let injected: Injected | undefined;
    const trigger = (): void => {
      if (injected || this.d2c.arrivals < target) return;
      this.hub.off('d2c', trigger);
      injected = this.fault(fault);
    };
    this.hub.on('d2c', trigger);
    this.burst(perPhase);
    await until(() => injected !== undefined, () => `the fault trigger (${this.d2c.arrivals} of ${target} stored)`, ms);
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
        if (!after.some((s) => s !== CONNECTED)) this.unexpected.push(`${id} never showed the connection loss (statuses after the fault: ${after.join(', ') || 'none'})`);
      }
    }
    return fired;
  }

  /** Waits until every send settled and every message arrived everywhere. */
  async drain(ms = 60_000): Promise<void> {
    await until(
      () => this.d2c.allSettled() && this.c2d.allSettled() && this.d2c.allArrived() && this.telemetry.allArrived() && this.c2d.allArrived(),
      () =>
        `every message: D2C pending ${this.d2c.pendingCount}, missing at the hub ${this.d2c.missing().length} (${this.d2c.missing().slice(0, 5).join(" ")}), ` +
        `at telemetry-in ${this.telemetry.missing().length}; C2D pending ${this.c2d.pendingCount}, missing ${this.c2d.missing().length} ` +
        `(${this.describeReadiness()})`,
      ms,
    );
  }

  /** Telemetry-in must emit every stored event once per partition: sequence numbers 0, 1, 2, ... */
  private telemetryGaps(): string[] {
    const problems: string[] = [];
    for (const [partitionId, seqs] of this.telemetrySequences) {
      const bad = seqs.findIndex((s, i) => s !== i);
      if (bad >= 0) problems.push(`telemetry-in partition ${partitionId}: sequence ${seqs[bad]} at position ${bad} (${seqs.slice(Math.max(0, bad - 3), bad + 3).join(',')})`);
    }
    return problems;
  }

  problems(): string[] {
    return [
      ...problemsOf('D2C', this.d2c.report(), { order: true }),
      ...problemsOf('telemetry-in', this.telemetry.report(), { order: true }),
      ...problemsOf('C2D', this.c2d.report(), { order: false }),
      ...this.telemetryGaps(),
      ...this.unexpected,
    ];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.hub.off('d2c', this.onD2c);
    await this.devices.close();
    await helper.unload();
    await helper.stopServer();
    await stopLocalHubs();
  }
}
