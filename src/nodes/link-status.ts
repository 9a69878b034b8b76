/**
 * The status of a node that owns a link on a shared connection. The connection can be open while the
 * hub refuses this node's link (a policy without the right, a device not registered): the connection's
 * own status would then say "connected" while every message fails, so such nodes show their link too.
 */
import { EventEmitter } from 'node:events';
import type { Node } from 'node-red';
import type { HubError } from '../iothub/errors';
import type { HubConnection } from '../iothub/hub-connection';
import { errorStatus, statusFor, type Status } from './status';

/** Counts that move per message are coalesced: a busy link would otherwise send a status per message to every editor. */
const STATUS_EVERY_MS = 100;

/** What the status is made of; `undefined` parts are not known yet. */
export interface LinkView {
  /** Why the node could not start at all. */
  startError?: HubError;
  connection?: HubConnection;
  attached: boolean;
  /** The hub's last refusal or detach of the link, cleared when it attaches. */
  linkError?: HubError;
  /** Set when the hub refuses the link for want of a right (see DurableLink.refusal). */
  refusal?: HubError;
  /** How the node's latest message went over this link: its failure, until one succeeds. */
  lastFailure?: HubError;
  /** Shown instead of plain "connected" while the link is up. */
  openStatus?: () => Status;
}

export function linkStatus(view: LinkView): Status | undefined {
  if (view.startError) return errorStatus(view.startError);
  const connection = view.connection;
  if (!connection) return undefined;
  if (connection.state !== 'open') return statusFor(connection.state, connection.error);
  if (!view.attached) {
    // Over an open connection a refusal is this link's own, and its code says what is wrong
    // (Unauthorized with fresh tokens: the policy lacks the right; DeviceNotFound; ...). A lapsed
    // token or a detach the link retries past by itself is shown as connecting.
    if (view.refusal) return errorStatus(view.refusal);
    const error = view.linkError;
    if (error && !error.retryable && error.code !== 'Unauthorized') return errorStatus(error);
    return statusFor('connecting');
  }
  // An attached link says little when every message over it fails (a device the hub does not know):
  // the latest outcome is the truth a flow author needs.
  if (view.lastFailure) return errorStatus(view.lastFailure);
  return view.openStatus?.() ?? statusFor('open');
}

/**
 * Shows `compute()` on the node when it changed: at once for a change of state (a test or a user
 * watching a fault sees every step), coalesced to one per 100 ms for counts that move per message.
 */
export class StatusShower {
  private timer: NodeJS.Timeout | undefined;
  private shown = '';
  private stopped = false;

  constructor(
    private readonly node: Node,
    private readonly compute: () => Status | undefined,
  ) {}

  readonly update = (): void => {
    if (this.stopped) return;
    const status = this.compute();
    if (!status) return;
    const key = `${status.fill}/${status.shape}/${status.text}`;
    if (key === this.shown) return;
    this.shown = key;
    this.node.status(status);
  };

  readonly updateSoon = (): void => {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.update();
    }, STATUS_EVERY_MS);
    this.timer.unref();
  };

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** A link a node owns: it says whether it is attached, and why the hub refuses it. */
export interface WatchedLink extends EventEmitter {
  readonly isAttached: boolean;
  readonly refusal: HubError | undefined;
}

/**
 * Several links shown as one (a node serving a gateway's devices, each with its own links): attached
 * while every one is, refused when any one is, and their attach and detach events passed on.
 */
export class LinkGroup extends EventEmitter implements WatchedLink {
  private readonly links: WatchedLink[] = [];

  add(link: WatchedLink): void {
    this.links.push(link);
    // Attached means every member is: one member's attach must not clear another's error on show.
    link.on('attached', () => {
      if (this.isAttached) this.emit('attached');
    });
    link.on('detached', (error: HubError) => this.emit('detached', error));
  }

  get isAttached(): boolean {
    return this.links.every((l) => l.isAttached);
  }

  get refusal(): HubError | undefined {
    return this.links.find((l) => l.refusal !== undefined)?.refusal;
  }
}

/**
 * A node's status from its connection and its own link: follows both, shows what linkStatus makes of
 * them, and lets go of both on stop (the connection is shared and outlives the node).
 */
export class LinkStatusWatch {
  private connection: HubConnection | undefined;
  private link: WatchedLink | undefined;
  private linkError: HubError | undefined;
  private startError: HubError | undefined;
  private lastFailure: HubError | undefined;
  private stopped = false;
  private readonly shower: StatusShower;
  private readonly onAttached = (): void => {
    this.linkError = undefined;
    this.shower.update();
  };
  private readonly onDetached = (error: HubError): void => {
    this.linkError = error;
    this.shower.update();
  };

  constructor(node: Node, openStatus?: () => Status) {
    this.shower = new StatusShower(node, () =>
      linkStatus({
        startError: this.startError,
        connection: this.connection,
        // Without a link of its own (device-out's senders come and go per device) the node is as
        // attached as its connection is open.
        attached: this.link ? this.link.isAttached : this.connection !== undefined,
        linkError: this.linkError,
        refusal: this.link?.refusal,
        lastFailure: this.lastFailure,
        openStatus,
      }),
    );
  }

  /** Shows `link` (or only the connection) on `connection` from now on (instead of whatever was watched before). */
  watch(connection: HubConnection, link?: WatchedLink): void {
    // A connection that resolves after the node closed: listening now would outlive the node on the
    // shared connection.
    if (this.stopped) return;
    this.release();
    this.startError = undefined;
    this.connection = connection;
    this.link = link;
    connection.on('state', this.shower.update);
    link?.on('attached', this.onAttached);
    link?.on('detached', this.onDetached);
    this.shower.update();
  }

  /** The node could not start its link at all. */
  failed(error: HubError): void {
    this.startError = error;
    this.shower.update();
  }

  /** How the latest message went: its failure, or undefined when the hub took it. */
  outcome(failure: HubError | undefined): void {
    if (failure === this.lastFailure) return;
    this.lastFailure = failure;
    this.shower.update();
  }

  /** For counts that move per message (coalesced). */
  readonly updateSoon = (): void => this.shower.updateSoon();

  stop(): void {
    this.stopped = true;
    this.shower.stop();
    this.release();
  }

  private release(): void {
    this.connection?.removeListener('state', this.shower.update);
    this.link?.removeListener('attached', this.onAttached);
    this.link?.removeListener('detached', this.onDetached);
    this.connection = undefined;
    this.link = undefined;
    this.linkError = undefined;
  }
}

/**
 * How long a link must stay attached to count as taken again: the hub answers some attaches it refuses
 * with an attach and then a detach (DurableLink counts the same second).
 */
const TAKEN_MS = 1000;

/** What a RefusalLog says, in the node's words. */
export interface RefusalWords {
  refused(error: HubError): void;
  taken(): void;
}

/**
 * Tells the Node-RED log once when the hub refuses a node's link for good (a device it does not know,
 * a right the credentials lack), and once when the link is taken again; never once per retry.
 */
export class RefusalLog {
  private refusedWith: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly onDetached = (error: HubError): void => {
    this.clearTimer();
    // As linkStatus judges it: a lapsed token or a detach that retrying cures is not a refusal.
    const refusal = this.link.refusal ?? (!error.retryable && error.code !== 'Unauthorized' ? error : undefined);
    if (!refusal || refusal.code === this.refusedWith) return;
    this.refusedWith = refusal.code;
    this.words.refused(refusal);
  };
  private readonly onAttached = (): void => {
    if (this.refusedWith === undefined) return;
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.link.isAttached) return;
      this.refusedWith = undefined;
      this.words.taken();
    }, TAKEN_MS);
    this.timer.unref();
  };

  constructor(
    private readonly link: WatchedLink,
    private readonly words: RefusalWords,
  ) {
    link.on('detached', this.onDetached);
    link.on('attached', this.onAttached);
  }

  stop(): void {
    this.clearTimer();
    this.link.removeListener('detached', this.onDetached);
    this.link.removeListener('attached', this.onAttached);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
