/** Device ids the contenders use; the runner registers them before the workers start. */
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
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pkg = require('../../../package.json') as { 'node-red'?: { nodes?: Record<string, string> } };
  return pkg['node-red']?.nodes?.['iothub-device-out'] !== undefined;
}
