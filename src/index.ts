/** Public entry point of the package for code (Node-RED loads the nodes through package.json). */
export { startSimulator, SimulatedHub, DEFAULT_KEYS } from './simulator';
export type { SimulatorOptionsInput } from './simulator';
export { parseConnectionString, ConnectionStringError, type Identity } from './iothub/connection-string';
export { makeSasToken, parseSasToken } from './iothub/sas';
export { HubError, errorFromCondition } from './iothub/errors';
