/**
 * IoT Hub's delivery feedback records: the JSON array in the body of each message on
 * `/messages/serviceBound/feedback`. The simulator encodes them, the client decodes them, and both read
 * the one record type here.
 */

/** The outcomes IoT Hub reports (the Azure SDKs' FeedbackStatusCode names). */
export type FeedbackStatus = 'Success' | 'Expired' | 'DeliveryCountExceeded' | 'Rejected' | 'Purged';

/** One record, with the service's field names (the Azure SDKs' FeedbackRecord). */
export interface FeedbackRecord {
  originalMessageId: string;
  deviceId: string;
  /** One of FeedbackStatus from the hub; read as text, since a newer hub may report another. */
  statusCode: string;
  description: string;
  enqueuedTimeUtc: string;
  deviceGenerationId: string;
}

/** A feedback body that is not a JSON array of record objects. */
export class InvalidFeedbackError extends Error {
  readonly code = 'InvalidFeedback';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidFeedbackError';
  }
}

/** The body bytes of one feedback message (UTF-8 JSON, each record's fields in the order given). */
export function encodeFeedback(records: readonly FeedbackRecord[]): Buffer {
  return Buffer.from(JSON.stringify(records), 'utf8');
}

/**
 * The records of one feedback body (its bytes, or its text). A field that is missing or null reads as
 * an empty string, and any other value as its text: a flow gets the same shape from every hub.
 */
export function decodeFeedback(body: Buffer | string | undefined): FeedbackRecord[] {
  const text = Buffer.isBuffer(body) ? body.toString('utf8') : body;
  let parsed: unknown;
  try {
    parsed = text === undefined ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed)) throw new InvalidFeedbackError('a feedback message from the hub is not a JSON array of records');
  return parsed.map((r: unknown) => {
    if (!r || typeof r !== 'object') throw new InvalidFeedbackError('a feedback record is not an object');
    const o = r as Record<string, unknown>;
    const field = (k: keyof FeedbackRecord): string => (o[k] === undefined || o[k] === null ? '' : String(o[k]));
    return {
      originalMessageId: field('originalMessageId'),
      deviceId: field('deviceId'),
      statusCode: field('statusCode'),
      description: field('description'),
      enqueuedTimeUtc: field('enqueuedTimeUtc'),
      deviceGenerationId: field('deviceGenerationId'),
    };
  });
}
