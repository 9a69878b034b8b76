"""azure-eventhub 5.x reading every partition of the built-in endpoint, as a service built on the SDK does.

Arguments: conn (an Event Hubs connection string), verify (CA file), start (-1 for the earliest event,
or a sequence number, read inclusively), count (events to wait for).

The SDK's default transport (pyamqp) only: its `uamqp_transport=True` is written for a later uAMQP than
the 1.5.3 Debian ships (it uses `Message.value`, `ReceiveClient.do_work(batch=...)`, `MessageHeader.ttl`
and `Message.message_annotations`, none of which 1.5.3 has) and fails against any server, Azure's
included. uamqp_eventhub.py drives azure-uamqp-c through the same operations instead.
"""
import os
import threading

from azure.eventhub import EventHubConsumerClient

from iothub_guide import arguments, emit, text

a = arguments()
client = EventHubConsumerClient.from_connection_string(
    a["conn"],
    consumer_group="$Default",
    connection_verify=a["verify"],
    logging_enable=bool(os.environ.get("IOTHUB_INTEROP_DEBUG")),
)
partition_ids = client.get_partition_ids()
properties = client.get_eventhub_properties()
wanted = int(a["count"])
start = int(a["start"])
events = []
done = threading.Event()
lock = threading.Lock()


def on_event(partition_context, event):
    if event is None:
        return
    with lock:
        events.append({
            "partition": partition_context.partition_id,
            "sequence_number": event.sequence_number,
            "offset": text(event.offset),
            "body": event.body_as_str(),
            "properties": text(dict(event.properties or {})),
            "device": text((event.system_properties or {}).get(b"iothub-connection-device-id")),
        })
        if len(events) >= wanted:
            done.set()


def on_error(partition_context, error):
    with lock:
        errors.append("{}: {!r}".format(partition_context.partition_id if partition_context else None, error))


errors = []
worker = threading.Thread(
    target=client.receive,
    kwargs={
        "on_event": on_event,
        "on_error": on_error,
        "starting_position": "-1" if start < 0 else start,
        "starting_position_inclusive": True,
        "max_wait_time": 1,
    },
    daemon=True,
)
worker.start()
done.wait(float(a.get("seconds", "40")))
client.close()
worker.join(10)
emit({
    "partition_ids": list(partition_ids),
    "eventhub_name": properties["eventhub_name"],
    "events": events,
    "errors": errors,
})
