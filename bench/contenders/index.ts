/**
 * Every contender a worker can run, by the name the runner uses. Modules load on demand, so that a
 * worker's memory holds only its own client library and not every other contender's.
 */
import type { ContenderFactory } from '../runners';

export const CONTENDERS: Record<string, () => Promise<ContenderFactory>> = {
  'd2c.raw': async () => (await import('./d2c')).rawSender,
  'd2c.core': async () => (await import('./d2c')).coreSender,
  'd2c.node': async () => (await import('./d2c')).deviceOutNode,
  'd2c.sdk-await': async () => (await import('./d2c-sdk')).sdkDevice('one'),
  'd2c.sdk-many': async () => (await import('./d2c-sdk')).sdkDevice('many'),
  'telemetry.raw': async () => (await import('./telemetry')).rawReceivers,
  'telemetry.node': async () => (await import('./telemetry')).telemetryInNode,
  'telemetry.node-batch': async () => (await import('./telemetry')).telemetryIn('batch'),
  'telemetry.node-context': async () => (await import('./telemetry')).telemetryIn('context'),
  'telemetry.node-blob': async () => (await import('./telemetry')).telemetryIn('blob'),
  'telemetry.sdk': async () => (await import('./telemetry-sdk')).eventHubsSdk('tuned'),
  'telemetry.sdk-defaults': async () => (await import('./telemetry-sdk')).eventHubsSdk('defaults'),
  'c2d.raw': async () => (await import('./c2d')).rawSender,
  'c2d.node': async () => (await import('./c2d')).c2dSendNode,
  'c2d.sdk-await': async () => (await import('./c2d-sdk')).sdkService('one'),
  'c2d.sdk-many': async () => (await import('./c2d-sdk')).sdkService('many'),
  'gateway.core': async () => (await import('./gateway')).coreGateway,
  'gateway.node': async () => (await import('./gateway')).deviceOutGateway,
  'rebalance.kill': async () => (await import('./rebalance')).rebalanceAfterKill,
  'ingest.raw-one': async () => (await import('./ingest')).rawIngest('one'),
  'ingest.raw-many': async () => (await import('./ingest')).rawIngest('many'),
};
