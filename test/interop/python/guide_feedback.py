"""Guide flow 3: the service receives delivery feedback on /messages/serviceBound/feedback."""
import json

import uamqp

from iothub_guide import arguments, emit, service_uri, text

a = arguments()
uri = service_uri(a["hub"], a["host"], a["policy"], a["key"], "/messages/serviceBound/feedback")
receive_client = uamqp.ReceiveClient(uri, debug=True)
records = []
content_types = []
wanted = int(a.get("count", "1"))
while len(records) < wanted:
    batch = receive_client.receive_message_batch(max_batch_size=10)
    for msg in batch:
        content_types.append(text(msg.properties.content_type))
        if msg.properties.content_type == b"application/vnd.microsoft.iothub.feedback.json":
            msg_body = json.loads(b"".join(msg.get_data()).decode("utf-8"))
            records.extend(msg_body)
receive_client.close()
emit({"records": records, "content_types": content_types})
