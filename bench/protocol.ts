/**
 * What the benchmark runner and its worker processes say to each other over IPC. Each contender runs
 * in a worker of its own, so that its peak RSS and CPU time are its own and not the simulator's or
 * another contender's; the runner hosts the simulator and drives the rounds.
 */

/** Where the simulator listens and how to reach it; every contender gets the same. */
export interface HubInfo {
  /** Address the simulator listens on. */
  host: string;
  /** Host name in connection strings and token audiences (matches the certificate). */
  hostName: string;
  hubName: string;
  amqpsPort: number;
  amqpPort: number;
  /** PEM file of the simulator's self-signed certificate (workers trust it). */
  certFile: string;
  serviceConnectionString: string;
  /** A policy with DeviceConnect only: what a gateway holds. */
  gatewayConnectionString: string;
  /** The Event Hubs-compatible endpoint over TLS. */
  eventHubConnectionString: string;
  /** Connection strings of the devices this contender uses, by device id. */
  devices: Record<string, string>;
}

export interface BenchParams {
  /** Payload bytes. */
  size: number;
  /** Length of one timed round, ms (sending benchmarks). */
  durationMs: number;
  /** Messages in flight for the contenders that pipeline. */
  window: number;
  /** Telemetry messages pre-filled and read per round. */
  messages: number;
  /** Credit / prefetch for every telemetry reader. */
  prefetch: number;
  /** Devices the C2D contenders address in turn. */
  c2dDevices: string[];
  /** Devices behind the gateway. */
  gatewayDevices: string[];
  /** Connections of the multi-connection ingest contender. */
  ingestConnections: number;
}

export interface WorkerSetup {
  type: 'setup';
  contender: string;
  hub: HubInfo;
  params: BenchParams;
}

export type ToWorker = WorkerSetup | { type: 'round'; index: number } | { type: 'finish' };

export interface RoundResult {
  /** Messages completed in the round (accepted by the hub, or received). */
  messages: number;
  /** The time they took, ms. */
  ms: number;
  /** CPU time of the worker process in the round, microseconds (user + system). */
  cpuUs: number;
}

export type FromWorker =
  | { type: 'ready'; notes: Record<string, number> }
  | ({ type: 'result' } & RoundResult)
  | { type: 'finished'; maxRssKb: number; notes: Record<string, number> }
  | { type: 'error'; message: string };
