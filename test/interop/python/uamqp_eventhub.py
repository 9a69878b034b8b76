"""azure-uamqp-c (Python uAMQP) on the Event Hubs-compatible endpoint, with the connection string the
simulator prints: the $management READ that lists partitions, then every partition read from a sequence
number with a selector filter. These are the operations azure-eventhub's uamqp transport performs.

Arguments: conn (an Event Hubs connection string), start (a sequence number, read inclusively),
count (events to wait for in all).
"""
import time

import uamqp

from iothub_guide import arguments, emit, text

a = arguments()
fields = dict(part.split("=", 1) for part in a["conn"].split(";") if "=" in part)
# uAMQP ignores a port in amqps:// URIs (always 5671), so only the host is taken from the endpoint.
host = fields["Endpoint"].split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
entity = fields["EntityPath"]
key_name = fields["SharedAccessKeyName"]
key = fields["SharedAccessKey"]

mgmt_uri = "amqps://{}/{}".format(host, entity)
mgmt_client = uamqp.AMQPClient(mgmt_uri, auth=uamqp.authentication.SASTokenAuth.from_shared_access_key(mgmt_uri, key_name, key), debug=True)
mgmt_client.open()
response = mgmt_client.mgmt_request(
    uamqp.Message(application_properties={"name": entity}),
    b"READ",
    op_type=b"com.microsoft:eventhub",
    status_code_field=b"status-code",
    description_fields=b"status-description",
)
info = response.get_data()
mgmt_client.close()
partition_ids = [text(p) for p in info[b"partition_ids"]]

wanted = int(a["count"])
events = []
deadline = time.time() + float(a.get("seconds", "30"))
for partition in partition_ids:
    uri = "amqps://{}/{}/ConsumerGroups/$Default/Partitions/{}".format(host, entity, partition)
    source = uamqp.address.Source(uri)
    source.set_filter("amqp.annotation.x-opt-sequence-number >= {}".format(a["start"]).encode("utf-8"))
    receive_client = uamqp.ReceiveClient(source, auth=uamqp.authentication.SASTokenAuth.from_shared_access_key(uri, key_name, key), debug=True, timeout=1000)
    for msg in receive_client.receive_messages_iter():
        events.append({
            "partition": partition,
            "sequence_number": msg.annotations[b"x-opt-sequence-number"],
            "body": b"".join(msg.get_data()).decode("utf-8"),
            "device": text(msg.annotations.get(b"iothub-connection-device-id")),
            "properties": text(dict(msg.application_properties or {})),
        })
        if len(events) >= wanted or time.time() > deadline:
            break
    receive_client.close()
emit({"eventhub_name": text(info[b"name"]), "partition_ids": partition_ids, "events": events})
