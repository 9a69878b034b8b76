/** Command-line flags of `npm run bench`. */

export const BENCHMARKS = ['d2c', 'telemetry', 'rebalance', 'c2d', 'gateway', 'ingest', 'd2c-rtt', 'c2d-rtt'] as const;
export type BenchmarkKey = (typeof BENCHMARKS)[number];

export interface Flags {
  short: boolean;
  only: BenchmarkKey[];
  rounds: number;
  warmup: number;
  durationMs: number;
  size: number;
  window: number;
  messages: number;
  prefetch: number;
  devices: number;
  c2dDevices: number;
  ingestConnections: number;
  /** Round trip the *-rtt benchmarks add between contenders and the simulator, ms. */
  rttMs: number;
  /** Directory for V8 CPU profiles of every worker (--cpu-prof), if wanted. */
  profileDir?: string;
  help: boolean;
}

export const USAGE = `npm run bench -- [flags]

  --short               a quick pass that proves every benchmark runs (CI); numbers mean little
  --only LIST           benchmarks to run, comma-separated: ${BENCHMARKS.join(', ')} (default all)
  --rounds N            timed rounds per contender (default 5)
  --warmup N            untimed rounds first (default 1)
  --duration SECONDS    length of a sending round (default 3)
  --size BYTES          payload size (default 1024)
  --window N            messages in flight for pipelining contenders (default 1000)
  --messages N          telemetry messages pre-filled and drained per round (default 100000)
  --prefetch N          credit of every telemetry reader (default 300)
  --devices N           devices behind the gateway (default 1000)
  --c2d-devices N       devices the C2D contenders address in turn (default 1000)
  --ingest-connections N  connections of the multi-connection ingest contender (default 4)
  --rtt MS              round trip added by a relay in the d2c-rtt and c2d-rtt benchmarks (default 20)
  --profile DIR         write a V8 CPU profile of every worker into DIR
  --help                this text

  BENCH_TRACE=1 in the environment prints each request to a worker on stderr (to find a stuck one).
`;

const SHORT = { rounds: 1, warmup: 1, durationMs: 300, messages: 2000, devices: 20, c2dDevices: 20, ingestConnections: 2 };

export function parseFlags(argv: string[]): Flags {
  const flags: Flags = {
    short: false,
    only: [...BENCHMARKS],
    rounds: 5,
    warmup: 1,
    durationMs: 3000,
    size: 1024,
    window: 1000,
    messages: 100_000,
    prefetch: 300,
    devices: 1000,
    c2dDevices: 1000,
    ingestConnections: 4,
    rttMs: 20,
    help: false,
  };
  const given = new Set<string>();
  const args = [...argv];
  const value = (name: string): string => {
    const v = args.shift();
    if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
    return v;
  };
  const whole = (name: string, min: number): number => {
    const n = Number(value(name));
    if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be a whole number of at least ${min}`);
    given.add(name);
    return n;
  };
  while (args.length > 0) {
    const arg = args.shift() as string;
    switch (arg) {
      case '--short':
        flags.short = true;
        break;
      case '--only': {
        const list = value(arg)
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        for (const b of list)
          if (!(BENCHMARKS as readonly string[]).includes(b)) throw new Error(`unknown benchmark "${b}"; choose from ${BENCHMARKS.join(', ')}`);
        flags.only = list as BenchmarkKey[];
        break;
      }
      case '--rounds':
        flags.rounds = whole(arg, 1);
        break;
      case '--warmup':
        flags.warmup = whole(arg, 0);
        break;
      case '--duration': {
        const s = Number(value(arg));
        if (!Number.isFinite(s) || s <= 0) throw new Error('--duration must be a positive number of seconds');
        flags.durationMs = Math.round(s * 1000);
        given.add(arg);
        break;
      }
      case '--size':
        flags.size = whole(arg, 0);
        break;
      case '--window':
        flags.window = whole(arg, 1);
        break;
      case '--messages':
        flags.messages = whole(arg, 1);
        break;
      case '--prefetch':
        flags.prefetch = whole(arg, 1);
        break;
      case '--devices':
        flags.devices = whole(arg, 1);
        break;
      case '--c2d-devices':
        flags.c2dDevices = whole(arg, 1);
        break;
      case '--ingest-connections':
        flags.ingestConnections = whole(arg, 1);
        break;
      case '--rtt':
        flags.rttMs = whole(arg, 1);
        break;
      case '--profile':
        flags.profileDir = value(arg);
        break;
      case '--help':
      case '-h':
        flags.help = true;
        break;
      default:
        throw new Error(`unknown flag ${arg}`);
    }
  }
  if (flags.short) {
    // Short mode shrinks what was not set explicitly.
    const names: Record<keyof typeof SHORT, string> = {
      rounds: '--rounds',
      warmup: '--warmup',
      durationMs: '--duration',
      messages: '--messages',
      devices: '--devices',
      c2dDevices: '--c2d-devices',
      ingestConnections: '--ingest-connections',
    };
    for (const key of Object.keys(SHORT) as Array<keyof typeof SHORT>) if (!given.has(names[key])) flags[key] = SHORT[key];
  }
  return flags;
}
