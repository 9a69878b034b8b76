/**
 * Which partitions a reader of a consumer group claims next: the rules of the official SDKs' "balanced"
 * strategy (@azure/event-hubs src/loadBalancerStrategies/loadBalancingStrategy.ts listAvailablePartitions,
 * balancedStrategy.ts; azure-eventhub _eventprocessor/_ownership_manager.py), so telemetry-in and SDK
 * processors on one consumer group converge to the same split:
 * - a claim counts while it was written within the expiry and names an owner (an empty owner gave it up);
 * - the readers are the owners of counting claims, plus this one; each should hold
 *   floor(partitions / readers) partitions, and (partitions mod readers) of them one more;
 * - when the split is already like that, nothing is claimed;
 * - otherwise this reader claims towards its share, unowned (or lapsed) partitions first, then partitions
 *   of readers holding more than their share;
 * - the balanced strategy takes one of those per round, at random, so readers converge without fighting.
 */
import type { Ownership } from './partition-store';

export interface BalanceInput {
  ownerId: string;
  partitionIds: string[];
  ownerships: Ownership[];
  expiryMs: number;
  nowMs: number;
  random?: () => number;
}

/** The claims that still count, by partition. */
export function activeOwnerships(ownerships: Ownership[], expiryMs: number, nowMs: number): Map<string, Ownership> {
  const active = new Map<string, Ownership>();
  for (const o of ownerships) if (o.ownerId !== '' && nowMs - o.lastModifiedMs < expiryMs) active.set(o.partitionId, o);
  return active;
}

function pick<T>(list: T[], random: () => number): T {
  return list.splice(Math.floor(random() * list.length), 1)[0];
}

/** Every partition this reader may claim now, the unowned first (listAvailablePartitions). */
export function claimable(input: BalanceInput): string[] {
  const random = input.random ?? Math.random;
  const { ownerId, partitionIds } = input;
  if (partitionIds.length === 0) return [];
  const active = activeOwnerships(input.ownerships, input.expiryMs, input.nowMs);
  if (active.size === 0) return [...partitionIds];
  const byOwner = new Map<string, string[]>([[ownerId, []]]);
  for (const o of active.values()) {
    if (!partitionIds.includes(o.partitionId)) continue;
    byOwner.set(o.ownerId, [...(byOwner.get(o.ownerId) ?? []), o.partitionId]);
  }
  const readers = byOwner.size;
  const min = Math.floor(partitionIds.length / readers);
  const withExtra = partitionIds.length % readers;
  let atMin = 0;
  let atMinPlusOne = 0;
  let above = 0;
  for (const owned of byOwner.values()) {
    if (owned.length === min) atMin++;
    else if (owned.length === min + 1) atMinPlusOne++;
    else if (owned.length > min + 1) above++;
  }
  // Balanced: every reader holds its share, and just the right number one more.
  if (atMinPlusOne === withExtra && atMin + atMinPlusOne === readers) return [];
  // Readers above min + 1 will shed partitions and become min + 1 ones: while fewer than needed hold
  // min + 1 (or more), this reader aims at min + 1 (getNumberOfPartitionsToClaim).
  const target = withExtra > 0 && atMinPlusOne + above < withExtra ? min + 1 : min;
  let wanted = target - (byOwner.get(ownerId)?.length ?? 0);
  if (wanted <= 0) return [];
  const result: string[] = [];
  const unowned = partitionIds.filter((id) => !active.has(id));
  while (wanted > 0 && unowned.length > 0) {
    result.push(pick(unowned, random));
    wanted--;
  }
  if (wanted === 0) return result;
  // Steal from the readers holding the most, leaving each its share (findPartitionsToSteal).
  const others = [...byOwner.entries()]
    .filter(([id, owned]) => id !== ownerId && owned.length > min)
    .map(([, owned]) => [...owned])
    .sort((a, b) => b.length - a.length);
  let extraSeen = 0;
  for (const owned of others) {
    if (wanted === 0) break;
    const keep = extraSeen < withExtra ? min + 1 : min;
    extraSeen++;
    let spare = owned.length - keep;
    while (wanted > 0 && spare > 0) {
      result.push(pick(owned, random));
      wanted--;
      spare--;
    }
  }
  return result;
}

/** The balanced strategy's choice for this round: at most one partition (balancedStrategy.ts). */
export function nextClaim(input: BalanceInput): string | undefined {
  const options = claimable(input);
  if (options.length === 0) return undefined;
  return options[Math.floor((input.random ?? Math.random)() * options.length)];
}
