"""Guide flow 2: a device receives cloud-to-device messages on /devices/<id>/messages/devicebound."""
import uamqp

from iothub_guide import arguments, device_uri, emit, text

a = arguments()
operation = "/devices/{device_id}/messages/devicebound".format(device_id=a["device"])
uri = device_uri(a["hub"], a["host"], a["device"], a["key"], operation)
receive_client = uamqp.ReceiveClient(uri, debug=True)
wanted = int(a.get("count", "1"))
received = []
while len(received) < wanted:
    batch = receive_client.receive_message_batch(max_batch_size=5)
    for msg in batch:
        p = msg.properties
        received.append({
            "body": b"".join(msg.get_data()).decode("utf-8"),
            "to": text(p.to),
            "message_id": text(p.message_id),
            "creation_time": p.creation_time,
            "correlation_id": text(p.correlation_id),
            "content_type": text(p.content_type),
            "content_encoding": text(p.content_encoding),
            "user_id": text(p.user_id),
            "absolute_expiry_time": p.absolute_expiry_time,
            "annotations": text(dict(msg.annotations or {})),
            "application_properties": text(dict(msg.application_properties or {})),
        })
receive_client.close()
emit({"messages": received})
