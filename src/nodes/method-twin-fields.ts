/**
 * How the method and twin nodes read their settings and msgs: pure functions, kept apart from the node
 * files (whose module.exports is the Node-RED register function) so they can be tested alone.
 */

/** The ids of a Device setting: separated by commas, spaces or new lines. Empty means the connection's own device. */
export function deviceList(setting: string): string[] {
  const ids = setting
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return ids.length === 0 ? [''] : [...new Set(ids)];
}

/** The status of an answer when neither the msg nor the node gives one: HTTP's OK. */
const DEFAULT_STATUS = 200;

/** The status to answer with: msg.statusCode (a number or numeric text), else the setting, else 200. */
export function answerStatus(msgStatus: unknown, setting: unknown): unknown {
  const read = (v: unknown): unknown => (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v);
  if (msgStatus !== undefined && msgStatus !== null && msgStatus !== '') return read(msgStatus);
  if (setting !== undefined && setting !== null && setting !== '') return read(setting);
  return DEFAULT_STATUS;
}

/** What a msg asks for: its topic when it names an action, else the node's setting. */
export function twinAction(topic: unknown, setting: unknown): 'get' | 'report' {
  const t = typeof topic === 'string' ? topic.trim().toLowerCase() : '';
  if (t === 'get' || t === 'report') return t;
  if (t === 'reported') return 'report';
  return setting === 'get' ? 'get' : 'report';
}

/** get or update: msg.topic when it names one, else the setting. */
export function desiredAction(topic: unknown, setting: unknown): 'get' | 'update' {
  const t = typeof topic === 'string' ? topic.trim().toLowerCase() : '';
  if (t === 'get' || t === 'update') return t;
  return setting === 'get' ? 'get' : 'update';
}
