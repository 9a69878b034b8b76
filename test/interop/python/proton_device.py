"""A device on Qpid Proton, a third AMQP implementation (neither rhea nor Azure's): CBS put-token with a
device token, telemetry with properties on /devices/<id>/messages/events, then cloud-to-device messages
on /devices/<id>/messages/devicebound, the first accepted and the rest rejected.

Arguments: hub, host, device, key, send (telemetry messages to send), receive (C2D messages to take), ca.
"""
import uuid

from proton import Message, SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container

from iothub_guide import arguments, emit, generate_sas_token, text

a = arguments()


class Device(MessagingHandler):
    def __init__(self):
        super(Device, self).__init__(auto_accept=False)
        self.result = {"put_token": None, "telemetry": [], "c2d": []}
        self.to_send = int(a["send"])
        self.to_receive = int(a["receive"])
        self.reply_to = "cbs-" + str(uuid.uuid4())

    def on_start(self, event):
        ssl = SSLDomain(SSLDomain.MODE_CLIENT)
        ssl.set_trusted_ca_db(a["ca"])
        ssl.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
        self.conn = event.container.connect("amqps://{}:5671".format(a["host"]), ssl_domain=ssl, allowed_mechs="ANONYMOUS", virtual_host=a["host"])
        self.cbs_sender = event.container.create_sender(self.conn, "$cbs")
        self.cbs_receiver = event.container.create_receiver(self.conn, "$cbs", name=self.reply_to)
        self.cbs_receiver.target.address = self.reply_to
        self.timer = event.container.schedule(float(a.get("seconds", "30")), self)

    def on_timer_task(self, event):
        self.result["timed_out"] = True
        self.conn.close()

    def on_link_opened(self, event):
        if event.link == self.cbs_receiver and self.cbs_sender.credit >= 0:
            audience = "{}/devices/{}".format(a["host"], a["device"])
            token = generate_sas_token(audience, a["key"], None)
            self.cbs_sender.send(Message(
                body=token,
                id=str(uuid.uuid4()),
                reply_to=self.reply_to,
                properties={"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": audience},
            ))

    def on_message(self, event):
        if event.receiver == self.cbs_receiver:
            self.accept(event.delivery)
            self.result["put_token"] = event.message.properties.get("status-code")
            if self.result["put_token"] == 200:
                self.events = event.container.create_sender(self.conn, "/devices/{}/messages/events".format(a["device"]))
                self.c2d = event.container.create_receiver(self.conn, "/devices/{}/messages/devicebound".format(a["device"]))
            else:
                self.conn.close()
            return
        m = event.message
        self.result["c2d"].append({
            "body": m.body.decode("utf-8") if isinstance(m.body, (bytes, memoryview)) else text(m.body),
            "message_id": text(m.id),
            "to": m.address,
            "annotations": text(dict(m.annotations or {})),
            "application_properties": text(dict(m.properties or {})),
        })
        if len(self.result["c2d"]) == 1:
            self.accept(event.delivery)
        else:
            self.reject(event.delivery)
        self.finish_if_done()

    def on_sendable(self, event):
        if event.sender != getattr(self, "events", None):
            return
        while self.to_send > 0 and event.sender.credit > 0:
            n = int(a["send"]) - self.to_send
            # inferred: the bytes go as a data section, the body devices send (not an AMQP-value binary).
            event.sender.send(Message(
                inferred=True,
                body=("reading %d" % n).encode("utf-8"),
                id="proton-%d" % n,
                content_type="text/plain",
                properties={"line": "3", "sequence": n},
            ))
            self.to_send -= 1

    def on_accepted(self, event):
        if event.sender == getattr(self, "events", None):
            self.result["telemetry"].append("accepted")
            self.finish_if_done()

    def on_rejected(self, event):
        if event.sender == getattr(self, "events", None):
            self.result["telemetry"].append("rejected: %s" % event.delivery.remote.condition)
            self.finish_if_done()

    def finish_if_done(self):
        if len(self.result["telemetry"]) >= int(a["send"]) and len(self.result["c2d"]) >= self.to_receive:
            self.timer.cancel()
            self.conn.close()


device = Device()
Container(device).run()
emit(device.result)
