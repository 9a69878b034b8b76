/** The local IoT Hub simulator: start it from code with `startSimulator(options)`. */
import { SimulatedHub } from './hub';
import type { SimulatorOptionsInput } from './options';

export { SimulatedHub, type HubStats, type D2cEvent } from './hub';
export { DEFAULT_KEYS } from './registry';
export { DEFAULT_OPTIONS, LOCAL_FEEDBACK_FLUSH_MS, OptionsError, readConfigFile, type SimulatorOptions, type SimulatorOptionsInput } from './options';
export { makeSelfSignedCertificate, loadOrMakeCertificate } from './certificate';

export function startSimulator(options: SimulatorOptionsInput = {}): Promise<SimulatedHub> {
  return SimulatedHub.start(options);
}
