"""Guide flow 5: the service reads telemetry from a partition: redirect first, then the built-in endpoint."""
import uamqp

from iothub_guide import arguments, emit, service_uri, text

a = arguments()
operation = "/messages/events/ConsumerGroups/{consumer_group}/Partitions/{p_id}".format(consumer_group="$Default", p_id=a["partition"])
uri = service_uri(a["hub"], a["host"], a["policy"], a["key"], operation)
endpoint_filter = a["filter"].encode("utf-8")


def set_endpoint_filter(uri, endpoint_filter=""):
    source_uri = uamqp.address.Source(uri)
    source_uri.set_filter(endpoint_filter)
    return source_uri


redirected = None
receive_client = uamqp.ReceiveClient(set_endpoint_filter(uri, endpoint_filter), debug=True)
try:
    batch = receive_client.receive_message_batch(max_batch_size=5)
except uamqp.errors.LinkRedirect as redirect:
    receive_client.close()
    # The guide is Python 2 code: uAMQP hands AMQP strings back as bytes, which Python 3 must decode
    # (the real hub's redirect arrives the same way).
    redirected = redirect.address.decode("utf-8")
    sas_auth = uamqp.authentication.SASTokenAuth.from_shared_access_key(redirected, a["policy"], a["key"])
    receive_client = uamqp.ReceiveClient(set_endpoint_filter(redirected, endpoint_filter), auth=sas_auth, debug=True)

events = []
wanted = int(a.get("count", "1"))
while len(events) < wanted:
    batch = receive_client.receive_message_batch(max_batch_size=5)
    for msg in batch:
        events.append({
            "body": b"".join(msg.get_data()).decode("utf-8"),
            "message_id": text(msg.properties.message_id),
            "annotations": text(dict(msg.annotations or {})),
            "application_properties": text(dict(msg.application_properties or {})),
        })
receive_client.close()
emit({"redirect": redirected, "events": events})
