/**
 * An error of IoT Hub's service REST API: the HTTP status, IoT Hub's six-digit error code and its name
 * (azure-iot-sdk-csharp v2, IotHubServiceErrorCode.cs; Azure docs, troubleshoot-error-codes.md).
 */
export class ServiceError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly errorCode: number,
    readonly codeName: string,
    message: string,
    readonly info: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ServiceError';
  }

  /**
   * The body as the hub writes it. Two shapes are in use and clients read one or the other, so both are
   * written: the documented `{ errorCode, trackingId, message, info, timestampUtc }` (troubleshoot-error-
   * codes.md, e.g. 404103), which the C# service SDK reads, and `{ Message: "ErrorCode:<name>;<text>" }`,
   * the only shape azure-iothub's `Http.parseErrorBody` (common-http/http.js) understands, from which it
   * tells DeviceNotFound from other 404s. Whether one response of the real hub carries both is UNVERIFIED.
   */
  body(trackingId: string): string {
    return JSON.stringify({
      Message: `ErrorCode:${this.codeName};${this.message}`,
      ExceptionMessage: `Tracking ID:${trackingId}-TimeStamp:${new Date().toISOString()}`,
      errorCode: this.errorCode,
      trackingId,
      message: this.message,
      info: this.info,
      timestampUtc: new Date().toISOString(),
    });
  }
}
