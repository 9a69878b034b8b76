/**
 * The simulator's identity registry: shared access policies with their rights, devices and modules
 * with their keys, consumer groups. Keys are fixed well-known values by default (as Azurite does),
 * so connection strings can be written down in docs and examples; every key can be overridden.
 */
import { randomUUID } from 'node:crypto';
import { isValidId } from '../amqp/message-rules';

export type Right = 'RegistryRead' | 'RegistryWrite' | 'ServiceConnect' | 'DeviceConnect';

export interface Policy {
  name: string;
  primaryKey: string;
  secondaryKey?: string;
  rights: Set<Right>;
}

export interface ModuleRecord {
  moduleId: string;
  primaryKey: string;
  secondaryKey?: string;
  generationId: string;
  /** Updates through the registry API since this process started (it moves the record's etag). */
  updates?: number;
}

export interface DeviceRecord {
  deviceId: string;
  primaryKey: string;
  secondaryKey?: string;
  generationId: string;
  modules: Map<string, ModuleRecord>;
  /** Updates through the registry API since this process started (it moves the record's etag). */
  updates?: number;
}

/** Well-known local keys. They protect nothing: the simulator binds to loopback by default. */
export const DEFAULT_KEYS = {
  iothubowner: 'SGVsbG9Mb2NhbElvVEh1Yk93bmVyS2V5MDAwMDAwMDA=',
  service: 'SGVsbG9Mb2NhbElvVEh1YlNlcnZpY2VLZXkwMDAwMDA=',
  device: 'SGVsbG9Mb2NhbElvVEh1YkRldmljZUtleTAwMDAwMDA=',
  registryRead: 'SGVsbG9Mb2NhbElvVEh1YlJlZ2lzdHJ5UmVhZEtleTA=',
  registryReadWrite: 'SGVsbG9Mb2NhbElvVEh1YlJlZ2lzdHJ5V3JpdGVLZXk=',
  /** Key of every device and module registered without one. */
  deviceDefault: 'SGVsbG9Mb2NhbElvVEh1YkRldmljZUtleURlZmF1bHQ=',
} as const;

export const DEFAULT_POLICY_RIGHTS: Record<string, Right[]> = {
  iothubowner: ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'],
  service: ['ServiceConnect'],
  device: ['DeviceConnect'],
  registryRead: ['RegistryRead'],
  registryReadWrite: ['RegistryRead', 'RegistryWrite'],
};

export interface RegistryOptions {
  /** Register a device the first time a token for it is presented with the default device key. */
  autoRegister: boolean;
  policies?: Array<{ name: string; primaryKey: string; secondaryKey?: string; rights: Right[] }>;
}

/** Told of every registry change (the store journals them). */
export interface RegistryObserver {
  deviceAdded(device: DeviceRecord): void;
  moduleAdded(deviceId: string, module: ModuleRecord): void;
  deviceRemoved(deviceId: string): void;
  moduleRemoved(deviceId: string, moduleId: string): void;
}

export class Registry {
  readonly policies = new Map<string, Policy>();
  readonly devices = new Map<string, DeviceRecord>();
  autoRegister: boolean;
  observer: RegistryObserver | undefined;
  /**
   * Devices and modules ("<device>" or "<device>/<module>") deleted through the registry API while this
   * process runs: auto-registration does not bring them back, so a client still retrying with the old
   * identity is refused as a real hub refuses a deleted device; creating one again clears it.
   */
  private readonly deleted = new Set<string>();

  constructor(options: RegistryOptions) {
    this.autoRegister = options.autoRegister;
    const defaults: NonNullable<RegistryOptions['policies']> = Object.entries(DEFAULT_POLICY_RIGHTS).map(([name, rights]) => ({
      name,
      primaryKey: DEFAULT_KEYS[name as keyof typeof DEFAULT_KEYS],
      rights,
    }));
    for (const p of options.policies ?? defaults) this.setPolicy(p.name, p.rights, p.primaryKey, p.secondaryKey);
  }

  setPolicy(name: string, rights: Right[], primaryKey: string, secondaryKey?: string): Policy {
    const policy: Policy = { name, primaryKey, rights: new Set(rights) };
    if (secondaryKey) policy.secondaryKey = secondaryKey;
    this.policies.set(name, policy);
    return policy;
  }

  addDevice(deviceId: string, keys: { primaryKey?: string; secondaryKey?: string } = {}): DeviceRecord {
    if (!isValidId(deviceId)) throw new Error(`invalid device id "${String(deviceId).slice(0, 40)}"`);
    const existing = this.devices.get(deviceId);
    if (existing) return existing;
    this.deleted.delete(deviceId);
    const device: DeviceRecord = {
      deviceId,
      primaryKey: keys.primaryKey ?? DEFAULT_KEYS.deviceDefault,
      generationId: generationId(),
      modules: new Map(),
    };
    if (keys.secondaryKey) device.secondaryKey = keys.secondaryKey;
    this.devices.set(deviceId, device);
    this.observer?.deviceAdded(device);
    return device;
  }

  /**
   * Brings back a device as it was stored: its generation id and modules; keys from the config file
   * (a device it names) win over stored ones, so a key can be changed there.
   */
  restoreDevice(stored: Omit<DeviceRecord, 'modules'> & { modules: ModuleRecord[] }): void {
    if (!isValidId(stored.deviceId)) return;
    const configured = this.devices.get(stored.deviceId);
    const device: DeviceRecord = configured ?? {
      deviceId: stored.deviceId,
      primaryKey: stored.primaryKey,
      generationId: stored.generationId,
      modules: new Map(),
    };
    device.generationId = stored.generationId;
    if (!configured && stored.secondaryKey) device.secondaryKey = stored.secondaryKey;
    for (const m of stored.modules) {
      if (!isValidId(m.moduleId)) continue;
      const mod = device.modules.get(m.moduleId) ?? { moduleId: m.moduleId, primaryKey: m.primaryKey, generationId: m.generationId };
      if (!device.modules.has(m.moduleId) && m.secondaryKey) mod.secondaryKey = m.secondaryKey;
      mod.generationId = m.generationId;
      device.modules.set(m.moduleId, mod);
    }
    this.devices.set(stored.deviceId, device);
  }

  addModule(deviceId: string, moduleId: string, keys: { primaryKey?: string; secondaryKey?: string } = {}): ModuleRecord {
    if (!isValidId(moduleId)) throw new Error(`invalid module id "${String(moduleId).slice(0, 40)}"`);
    const device = this.addDevice(deviceId);
    const existing = device.modules.get(moduleId);
    if (existing) return existing;
    this.deleted.delete(`${deviceId}/${moduleId}`);
    const mod: ModuleRecord = {
      moduleId,
      primaryKey: keys.primaryKey ?? DEFAULT_KEYS.deviceDefault,
      generationId: generationId(),
    };
    if (keys.secondaryKey) mod.secondaryKey = keys.secondaryKey;
    device.modules.set(moduleId, mod);
    this.observer?.moduleAdded(deviceId, mod);
    return mod;
  }

  /**
   * New keys for a device or module that exists (the registry API's update): the store journals the
   * record again, so a restart keeps the keys a service set.
   */
  updateKeys(deviceId: string, moduleId: string | undefined, keys: { primaryKey?: string; secondaryKey?: string }): void {
    const device = this.devices.get(deviceId);
    const record = moduleId === undefined ? device : device?.modules.get(moduleId);
    if (!device || !record) return;
    if (keys.primaryKey !== undefined) record.primaryKey = keys.primaryKey;
    if (keys.secondaryKey !== undefined) record.secondaryKey = keys.secondaryKey;
    record.updates = (record.updates ?? 0) + 1;
    if (moduleId === undefined) this.observer?.deviceAdded(device);
    else this.observer?.moduleAdded(deviceId, record as ModuleRecord);
  }

  /** Told of every device (or, with a module id, module) removed, after the observer (the hub detaches its links). */
  readonly removalListeners: Array<(deviceId: string, moduleId?: string) => void> = [];

  removeDevice(deviceId: string): boolean {
    const removed = this.devices.delete(deviceId);
    if (removed) {
      this.deleted.add(deviceId);
      this.observer?.deviceRemoved(deviceId);
      for (const listener of this.removalListeners) listener(deviceId);
    }
    return removed;
  }

  removeModule(deviceId: string, moduleId: string): boolean {
    const removed = this.devices.get(deviceId)?.modules.delete(moduleId) ?? false;
    if (removed) {
      this.deleted.add(`${deviceId}/${moduleId}`);
      this.observer?.moduleRemoved(deviceId, moduleId);
      for (const listener of this.removalListeners) listener(deviceId, moduleId);
    }
    return removed;
  }

  getDevice(deviceId: string): DeviceRecord | undefined {
    return this.devices.get(deviceId);
  }

  /** Keys a device (or module) token may be signed with; auto-registration offers the default key. */
  keysFor(deviceId: string, moduleId?: string): string[] {
    const device = this.devices.get(deviceId);
    if (!device) return this.mayAutoRegister(deviceId) ? [DEFAULT_KEYS.deviceDefault] : [];
    if (moduleId === undefined) return keyList(device);
    const mod = device.modules.get(moduleId);
    if (!mod) return this.mayAutoRegister(deviceId, moduleId) ? [DEFAULT_KEYS.deviceDefault] : [];
    return keyList(mod);
  }

  /** Whether an unknown device (or module) would be registered on first use: auto-registration is on, and it was not deleted. */
  mayAutoRegister(deviceId: string, moduleId?: string): boolean {
    if (!this.autoRegister || !isValidId(deviceId) || this.deleted.has(deviceId)) return false;
    return moduleId === undefined || (isValidId(moduleId) && !this.deleted.has(`${deviceId}/${moduleId}`));
  }

  /** Called once a token for a device proves valid, so auto-registered devices exist from then on. */
  ensure(deviceId: string, moduleId?: string): void {
    if (!this.mayAutoRegister(deviceId, moduleId)) return;
    if (moduleId !== undefined) this.addModule(deviceId, moduleId);
    else this.addDevice(deviceId);
  }
}

function keyList(record: { primaryKey: string; secondaryKey?: string }): string[] {
  return record.secondaryKey ? [record.primaryKey, record.secondaryKey] : [record.primaryKey];
}

function generationId(): string {
  // IoT Hub generation ids are 18-digit numbers; uniqueness is all that matters here.
  return '6' + randomUUID().replace(/\D/g, '').padEnd(17, '0').slice(0, 17);
}
