#!/usr/bin/env node
/**
 * `iothub-sim`: runs the local IoT Hub until Ctrl-C and prints the connection strings to use.
 * Errors end in one line and exit code 1, never a stack trace.
 */
import { parseArgs } from 'node:util';
import { OptionsError, readConfigFile, startSimulator, type SimulatedHub, type SimulatorOptionsInput } from './index';

const HELP = `Usage: iothub-sim [options]

A local Azure IoT Hub over AMQP 1.0 for development and tests (no Azure account needed).

Options:
  --host ADDR            address to bind (default 127.0.0.1)
  --host-name NAME       host name in connection strings and tokens (default localhost)
  --hub-name NAME        hub name, also the Event Hubs-compatible name (default devhub)
  --amqp-port N          plain AMQP port, 0 = any free port, off = none (default 5672)
  --amqps-port N         AMQPS (TLS) port, 0 = any free port, off = none (default 5671)
  --ws-port N            AMQP over WebSockets (TLS) port, off = none (default off)
  --rest-port N          HTTPS service API port (direct methods, twins, registry), 0 = any
                         free port, off = none (default off; IoT Hub's own is 443)
  --partitions N         partitions of the built-in endpoint, 1 to 32 (default 4)
  --consumer-group NAME  an extra consumer group (repeatable); $Default always exists
  --device ID            register a device with the default key (repeatable)
  --config FILE          JSON settings: devices, policies, consumerGroups, ports, limits
  --cert-dir DIR         where the self-signed certificate is kept (default ~/.iothub-sim)
  --location DIR         keep devices, C2D queues, telemetry and twins in DIR across restarts
  --no-auto-register     refuse devices that are not registered
  -h, --help             show this help
`;

function port(name: string, value: string | undefined): number | null | undefined {
  if (value === undefined) return undefined;
  if (value === 'off') return null;
  if (!/^\d+$/.test(value)) throw new OptionsError(`--${name} must be a port number or "off"`);
  return Number(value);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' },
      'host-name': { type: 'string' },
      'hub-name': { type: 'string' },
      'amqp-port': { type: 'string' },
      'amqps-port': { type: 'string' },
      'ws-port': { type: 'string' },
      'rest-port': { type: 'string' },
      partitions: { type: 'string' },
      'consumer-group': { type: 'string', multiple: true },
      device: { type: 'string', multiple: true },
      config: { type: 'string' },
      'cert-dir': { type: 'string' },
      location: { type: 'string' },
      'no-auto-register': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const input: SimulatorOptionsInput = values.config ? await readConfigFile(values.config) : {};
  if (values.host) input.host = values.host;
  if (values['host-name']) input.hostName = values['host-name'];
  if (values['hub-name']) input.hubName = values['hub-name'];
  const amqp = port('amqp-port', values['amqp-port']);
  if (amqp !== undefined) input.amqpPort = amqp;
  const amqps = port('amqps-port', values['amqps-port']);
  if (amqps !== undefined) input.amqpsPort = amqps;
  const ws = port('ws-port', values['ws-port']);
  if (ws !== undefined) input.wsPort = ws;
  const rest = port('rest-port', values['rest-port']);
  if (rest !== undefined) input.restPort = rest;
  if (values.partitions !== undefined) {
    if (!/^\d+$/.test(values.partitions)) throw new OptionsError('--partitions must be a number');
    input.partitionCount = Number(values.partitions);
  }
  if (values['consumer-group']) input.consumerGroups = [...(input.consumerGroups ?? []), ...values['consumer-group']];
  if (values.device) input.devices = [...(input.devices ?? []), ...values.device.map((deviceId) => ({ deviceId }))];
  if (values['cert-dir']) input.certDir = values['cert-dir'];
  if (values.location) input.location = values.location;
  if (values['no-auto-register']) input.autoRegister = false;

  // Ctrl-C from the first moment: a signal that comes while the simulator starts stops it once started.
  const run: { hub?: SimulatedHub; stopRequested: boolean; stopping: boolean } = { stopRequested: false, stopping: false };
  const stop = (): void => {
    run.stopRequested = true;
    if (!run.hub || run.stopping) return;
    run.stopping = true;
    run.hub.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const hub = await startSimulator(input);
  run.hub = hub;
  const lines = [`IoT Hub simulator "${hub.options.hubName}" is running.`];
  if (hub.ports.amqps !== undefined) lines.push(`  AMQPS      ${hub.options.host}:${hub.ports.amqps}`);
  if (hub.ports.amqp !== undefined) lines.push(`  AMQP       ${hub.options.host}:${hub.ports.amqp}`);
  if (hub.ports.ws !== undefined) lines.push(`  WebSocket  wss://${hub.options.host}:${hub.ports.ws}/$iothub/websocket`);
  if (hub.ports.rest !== undefined) lines.push(`  REST       https://${hub.options.host}:${hub.ports.rest} (service API: methods, twins, registry)`);
  lines.push('', 'Service connection string (iothubowner):', `  ${hub.serviceConnectionString()}`);
  const devices = [...hub.registry.devices.keys()];
  const shown = devices.length > 0 ? devices.slice(0, 10) : ['device1'];
  lines.push('', 'Device connection strings' + (devices.length > 0 ? ':' : ' (any device id works; it registers on first connect):'));
  for (const id of shown) lines.push(`  ${hub.deviceConnectionString(id)}`);
  lines.push('', 'Event Hubs-compatible connection string (built-in endpoint):', `  ${hub.eventHubConnectionString()}`);
  if (hub.certificate && hub.ports.amqps !== undefined) {
    lines.push('', `TLS certificate: ${hub.options.tls ? '(supplied)' : `${hub.options.certDir}/cert.pem`}`);
    lines.push('  Trust it with NODE_EXTRA_CA_CERTS=<that file>, or the SDK\'s "ca" option.');
  }
  if (hub.options.location !== undefined) lines.push('', `State is kept in ${hub.options.location}`);
  lines.push('', 'Press Ctrl-C to stop.');
  process.stdout.write(lines.join('\n') + '\n');
  if (run.stopRequested) stop();
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`iothub-sim: ${message.split('\n')[0]}\n`);
  process.exit(1);
});
