"""azure-eventhub 5.11 with azure-eventhub-checkpointstoreblob (Debian python3-azure): a service built on
the Python SDK taking over a consumer group telemetry-in read, through the checkpoints it wrote.

Arguments: conn (an Event Hubs connection string), verify (CA file), storage (a storage connection
string), container, count (events to wait for), seconds (how long at most).

Prints the checkpoints and ownership the Python store lists for the consumer group, then the events the
consumer read with that store: starting after each partition's checkpoint (its fallback start position is
the earliest event, so a checkpoint it did not find would show as events read again).
"""
import os
import threading

from azure.eventhub import EventHubConsumerClient
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

from iothub_guide import arguments, emit, text

a = arguments()
store = BlobCheckpointStore.from_connection_string(a["storage"], a["container"])
client = EventHubConsumerClient.from_connection_string(
    a["conn"],
    consumer_group="$Default",
    checkpoint_store=store,
    connection_verify=a["verify"],
    load_balancing_interval=0.5,
    partition_ownership_expiration_interval=5,
    logging_enable=bool(os.environ.get("IOTHUB_INTEROP_DEBUG")),
)
namespace = client._address.hostname  # what the Python processor names the blobs with
eventhub = client.eventhub_name
checkpoints = [
    {"partition": c["partition_id"], "sequence_number": c["sequence_number"], "offset": text(c.get("offset"))}
    for c in store.list_checkpoints(namespace, eventhub, "$Default")
]
ownership = [{"partition": o["partition_id"], "owner": o["owner_id"]} for o in store.list_ownership(namespace, eventhub, "$Default")]
wanted = int(a["count"])
events = []
errors = []
done = threading.Event()
lock = threading.Lock()


def on_event(partition_context, event):
    if event is None:
        return
    with lock:
        events.append({"partition": partition_context.partition_id, "sequence_number": event.sequence_number, "body": event.body_as_str()})
        if len(events) >= wanted:
            done.set()


def on_error(partition_context, error):
    with lock:
        errors.append("{}: {!r}".format(partition_context.partition_id if partition_context else None, error))


worker = threading.Thread(
    target=client.receive,
    kwargs={"on_event": on_event, "on_error": on_error, "starting_position": "-1", "max_wait_time": 1},
    daemon=True,
)
worker.start()
done.wait(float(a.get("seconds", "40")))
client.close()
worker.join(10)
emit({"namespace": namespace, "eventhub": eventhub, "checkpoints": checkpoints, "ownership": ownership, "events": events, "errors": errors})
