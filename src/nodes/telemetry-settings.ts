/**
 * telemetry-in's editor fields for checkpoints, balancing and batches, read into the core's options:
 * blanks and nonsense fall back to the defaults, a `${VAR}` storage connection string is read from the
 * environment (the variable named in errors, its value never).
 */
import type { CheckpointPolicy } from '../iothub/checkpointer';
import { HubError } from '../iothub/errors';
import { DEFAULT_OWNERSHIP_EXPIRY_MS, DEFAULT_UPDATE_INTERVAL_MS } from '../iothub/partition-balancer';
import { unquote } from './connection-options';

export interface TelemetrySettings {
  checkpointKind?: 'context' | 'blob';
  container?: string;
  checkpointMode?: 'auto' | 'msg';
  checkpointEvents?: number | string;
  checkpointSeconds?: number | string;
  updateInterval?: number | string;
  ownershipExpiry?: number | string;
  batchSize?: number | string;
  batchWait?: number | string;
}

export interface BlobSettings {
  connectionString: string;
  container: string;
  updateIntervalMs: number;
  expiryMs: number;
}

export const DEFAULT_CONTAINER = 'telemetry-checkpoints';
export const DEFAULT_CHECKPOINT_SECONDS = 1;
export const DEFAULT_BATCH_WAIT_MS = 250;

const ENV_REFERENCE = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
/** Blob container names: 3-63 lower-case letters, digits and single hyphens, starting and ending alike. */
const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;

function number(value: unknown, fallback: number, min: number): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  return Number.isFinite(n) && n >= min ? n : fallback;
}

export function checkpointPolicyFrom(settings: TelemetrySettings): CheckpointPolicy {
  return {
    everyEvents: Math.floor(number(settings.checkpointEvents, 0, 0)),
    everyMs: number(settings.checkpointSeconds, DEFAULT_CHECKPOINT_SECONDS, 0.05) * 1000,
  };
}

/** Events per msg (1: a msg per event) and how long a partition's open batch may wait. */
export function batchFrom(settings: TelemetrySettings): { size: number; waitMs: number } {
  return { size: Math.floor(number(settings.batchSize, 1, 1)), waitMs: number(settings.batchWait, DEFAULT_BATCH_WAIT_MS, 1) };
}

/** The Blob store's settings; throws InvalidConfig or InvalidConnectionString naming the field. */
export function blobSettingsFrom(settings: TelemetrySettings, credential: string | undefined, env: Record<string, string | undefined>): BlobSettings {
  let text = unquote(credential ?? '').trim();
  const reference = ENV_REFERENCE.exec(text);
  if (reference) text = unquote(env[reference[1]] ?? '').trim();
  if (!text) {
    throw new HubError(
      'InvalidConnectionString',
      reference ? `the environment variable ${reference[1]} (storage connection string) is not set or empty` : 'no storage connection string is set',
    );
  }
  const container = (settings.container ?? '').trim() || DEFAULT_CONTAINER;
  if (!CONTAINER_NAME.test(container)) {
    throw new HubError('InvalidConfig', `"${container.slice(0, 70)}" is not a Blob container name: 3 to 63 lower-case letters, digits and hyphens`);
  }
  const updateIntervalMs = number(settings.updateInterval, DEFAULT_UPDATE_INTERVAL_MS / 1000, 0.05) * 1000;
  // A claim must outlive a few rounds, or readers would take each other's partitions between renewals.
  const expiryMs = Math.max(number(settings.ownershipExpiry, DEFAULT_OWNERSHIP_EXPIRY_MS / 1000, 0.1) * 1000, updateIntervalMs * 2);
  return { connectionString: text, container, updateIntervalMs, expiryMs };
}
