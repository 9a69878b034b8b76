/**
 * An error of IoT Hub's service REST API: the HTTP status, IoT Hub's six-digit error code and its name
 * (azure-iot-sdk-csharp, iothub/service/src/Common/Exceptions/ErrorCode.cs; Azure docs,
 * troubleshoot-error-codes.md).
 */

/** The response header that carries the error's name (azure-iot-sdk-csharp common/src/service/CommonConstants.cs HttpErrorCodeName). */
export const ERROR_CODE_HEADER = 'iothub-errorcode';

/**
 * Names written in the older body shape, `Message: "ErrorCode:<Name>;<text>"`. azure-iothub reads only
 * that shape (azure-iot-http-base http.js `parseErrorBody`) and needs the name for just these, on a 404:
 * rest_api_client.js `translateError` makes DeviceNotFoundError or IotHubNotFoundError of them and a
 * plain Error('Not found') of any other 404. Which shape the real hub uses for 404001 today is
 * UNVERIFIED; this one is what both official service SDKs accept (the C# SDK falls back to the `;`
 * fields when Message is not JSON: ExceptionHandlingHelper.cs GetExceptionCodeAsync).
 */
const OLDER_SHAPE = new Set(['DeviceNotFound', 'IotHubNotFound']);

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
   * The body as the hub writes it: `Message` holds the error as a JSON text, `{"errorCode":404103,
   * "trackingId":..., "message":..., "info":{...}, "timestampUtc":...}`, and `ExceptionMessage` is empty
   * (a real hub's answer to a method call on an offline device, quoted in azure-iot-sdk-csharp issue
   * #3442, 2024). The C# service SDK reads errorCode from that inner JSON and takes it only when the
   * iothub-errorcode header names the same code (ExceptionHandlingHelper.cs GetExceptionCodeAsync; its
   * tests in iothub/service/tests/ExceptionHandlingHelperTests.cs); see headers(). DeviceNotFound and
   * IotHubNotFound use the older shape, see OLDER_SHAPE. The text never holds a `;`: azure-iothub splits
   * Message at `;` (parseErrorBody) and would read a garbled code and message from the JSON shape.
   */
  body(trackingId: string): string {
    const now = new Date().toISOString();
    const text = this.message.replace(/;/g, ',');
    if (OLDER_SHAPE.has(this.codeName)) {
      // As the hub wrote it in 2017 (azure-iot-sdk-java issue #85, azure-iot-sdk-csharp issue #37).
      return JSON.stringify({ Message: `ErrorCode:${this.codeName};${text}`, ExceptionMessage: `Tracking ID:${trackingId}-TimeStamp:${now}` });
    }
    const inner = { errorCode: this.errorCode, trackingId, message: text, info: this.info, timestampUtc: now };
    return JSON.stringify({ Message: JSON.stringify(inner), ExceptionMessage: '' });
  }

  /** The header with the error's name, which the C# SDK matches against the body's code (see body()). */
  headers(): Record<string, string> {
    return { [ERROR_CODE_HEADER]: this.codeName };
  }
}
