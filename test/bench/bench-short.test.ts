/**
 * `npm run bench -- --short` as CI runs it: every benchmark runs to the end and prints its table with
 * a row for every contender that moved messages. Timings are not asserted; only that it all runs.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { parseFlags } from '../../bench/args';
import { BENCHMARKS } from '../../bench/benchmarks';

const root = path.resolve(__dirname, '..', '..', '..');

function runShort(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, 'dist', 'bench', 'run.js'), '--short'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The text of the section headed `### title`, up to the next section. */
function sectionOf(output: string, title: string): string | undefined {
  const start = output.indexOf(`### ${title}\n`);
  if (start < 0) return undefined;
  const end = output.indexOf('\n### ', start + 1);
  return output.slice(start, end < 0 ? undefined : end);
}

/** The cells of the table row whose first cell is `label` (a baseline's ends in "(baseline)"). */
function rowOf(output: string, label: string): string[] | undefined {
  for (const line of output.split('\n')) {
    if (!line.startsWith('|')) continue;
    const cells = line
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim());
    if (cells[0] === label || cells[0] === `${label} (baseline)`) return cells;
  }
  return undefined;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('npm run bench -- --short', function () {
  // Every contender starts its own process (two of them a Node-RED runtime) on a busy 2-core machine.
  this.timeout(300_000);

  it('runs every benchmark and prints a row with a message rate for every contender', async () => {
    const { code, stdout, stderr } = await runShort();
    assert.equal(code, 0, `bench exited with ${code}:\n${stderr.slice(-3000)}`);
    const flags = parseFlags(['--short']);
    for (const bench of BENCHMARKS) {
      const section = sectionOf(stdout, bench.title);
      assert.ok(section, `no section for ${bench.key}`);
      for (const spec of bench.contenders(flags)) {
        const row = rowOf(section, spec.label);
        assert.ok(row, `no row for ${spec.name} (${spec.label})`);
        // A rate, or for a timed benchmark a time ("13.12 s"): either way above zero.
        const rate = Number.parseFloat(row[1].replace(/,/g, ''));
        assert.ok(rate > 0, `${spec.name} moved no messages in ${bench.key}: ${row.join(' | ')}`);
      }
      // Every target of a benchmark whose contenders all ran is judged, met or missed.
      for (const target of bench.targets)
        assert.match(section, new RegExp(`^- ${escape(target.text)}: [^\\n]+ (met|MISSED)$`, 'm'), `${bench.key}: no verdict on "${target.text}"`);
    }
    assert.match(stdout, /\| contender +\| devices \| time to authenticate and attach all \|/);
    assert.match(stdout, /simulator ingest [\d,]+ msgs\/s above every D2C client figure/);
  });
});
