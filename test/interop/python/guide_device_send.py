"""Guide flow 4: a device sends telemetry with an application property on /devices/<id>/messages/events."""
import uamqp

from iothub_guide import arguments, device_uri, emit

a = arguments()
operation = "/devices/{device_id}/messages/events".format(device_id=a["device"])
uri = device_uri(a["hub"], a["host"], a["device"], a["key"], operation)
send_client = uamqp.SendClient(uri, debug=True)

msg_props = uamqp.message.MessageProperties()
msg_props.message_id = a["message_id"]
application_properties = {"app_property_key": a["property"]}
message = uamqp.Message(a["body"].encode("utf-8"), properties=msg_props, application_properties=application_properties)
send_client.queue_message(message)
results = send_client.send_all_messages()
send_client.close()
emit({"results": [str(r) for r in results]})
