/**
 * Root hooks for every test file: any unhandled error or rejection anywhere in the suite fails it,
 * because in Node-RED the same thing would crash or poison a user's runtime.
 */
const problems: string[] = [];

process.on('unhandledRejection', (reason: unknown) => {
  problems.push(`unhandledRejection: ${reason instanceof Error ? reason.stack : String(reason)}`);
});
process.on('uncaughtException', (err: Error) => {
  problems.push(`uncaughtException: ${err.stack ?? err.message}`);
});
process.on('warning', (warning: Error) => {
  // A timer overflow fires at once instead of late: always a bug (an expiry that happens too soon).
  if (warning.name === 'MaxListenersExceededWarning' || warning.name === 'TimeoutOverflowWarning') problems.push(`warning: ${warning.message}`);
});

export const mochaHooks = {
  afterEach(): void {
    if (problems.length > 0) {
      const found = problems.splice(0);
      throw new Error(`unhandled problems during the last test:\n${found.join('\n')}`);
    }
  },
};
