/** Device ids the contenders use; the runner registers them before the workers start. */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

export const D2C_DEVICES = {
  raw: 'bench-d2c-raw',
  core: 'bench-d2c-core',
  node: 'bench-d2c-node',
  sdkAwait: 'bench-d2c-sdk-await',
  sdkConcurrent: 'bench-d2c-sdk-many',
} as const;

export const ingestDevice = (i: number): string => `bench-ingest-${i}`;

/** Whether this checkout has the device-out node (the D2C benchmark runs it in a flow when it does). */
export function hasDeviceOut(): boolean {
  const pkg = JSON.parse(readFileSync(path.resolve(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
    'node-red'?: { nodes?: Record<string, string> };
  };
  return pkg['node-red']?.nodes?.['iothub-device-out'] !== undefined;
}
