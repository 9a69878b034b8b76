"""Guide flow 1: the service sends a cloud-to-device message with iothub-ack full."""
import uamqp

from iothub_guide import arguments, emit, service_uri

a = arguments()
uri = service_uri(a["hub"], a["host"], a["policy"], a["key"], "/messages/devicebound")
send_client = uamqp.SendClient(uri, debug=True)

to = "/devices/{device_id}/messages/devicebound".format(device_id=a["device"])
msg_props = uamqp.message.MessageProperties(message_id=a["message_id"], to=to)
msg = uamqp.Message(a["body"].encode("utf-8"), properties=msg_props, application_properties={"iothub-ack": "full"})
send_client.queue_message(msg)
results = send_client.send_all_messages()
send_client.close()
emit({"results": [str(r) for r in results]})
