/** Device ids the contenders use; the runner registers them before the workers start. */
export const D2C_DEVICES = {
  raw: 'bench-d2c-raw',
  core: 'bench-d2c-core',
  sdkAwait: 'bench-d2c-sdk-await',
  sdkConcurrent: 'bench-d2c-sdk-many',
} as const;

export const ingestDevice = (i: number): string => `bench-ingest-${i}`;
