/**
 * Where telemetry-in keeps its place: the last sequence number handled per partition, under a key for
 * the Event Hubs endpoint and consumer group it was read from. Sequence numbers mean nothing on another
 * hub (or on the same hub recreated), so a checkpoint is only ever used for the endpoint it came from.
 */

export type Positions = Record<string, number>;

/** The stored value: positions per endpoint and consumer group. */
export type StoredCheckpoints = Record<string, Positions>;

/** `<host>/<entity>/<consumer group>`, host without port, host and group case-folded as the service treats them. */
export function checkpointKey(host: string, entityPath: string, consumerGroup: string): string {
  return `${host.split(':')[0].toLowerCase()}/${entityPath}/${consumerGroup.toLowerCase()}`;
}

function positionsOf(value: unknown): Positions {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return {};
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).filter(([, v]) => typeof v === 'number' && Number.isInteger(v) && v >= 0),
  ) as Positions;
}

/** True for the layout of earlier versions: positions stored flat, for whatever endpoint the node read. */
function isFlat(value: Record<string, unknown>): boolean {
  const entries = Object.values(value);
  return entries.length > 0 && entries.every((v) => typeof v === 'number');
}

/**
 * The positions stored for one endpoint and group. Checkpoints of earlier versions (flat, with no
 * endpoint) are taken as this endpoint's: they were the same node's; one that points past the end of
 * a partition is found out by the service and started over (see PartitionReaders).
 */
export function readCheckpoints(stored: unknown, key: string): Positions {
  if (!stored || typeof stored !== 'object' || Array.isArray(stored)) return {};
  const all = stored as Record<string, unknown>;
  if (isFlat(all)) return positionsOf(all);
  return positionsOf(all[key]);
}

/** The stored value with this endpoint's positions replaced; other endpoints' are kept. */
export function writeCheckpoints(stored: unknown, key: string, positions: Positions): StoredCheckpoints {
  const all = stored && typeof stored === 'object' && !Array.isArray(stored) && !isFlat(stored as Record<string, unknown>) ? (stored as StoredCheckpoints) : {};
  return { ...all, [key]: { ...positions } };
}
