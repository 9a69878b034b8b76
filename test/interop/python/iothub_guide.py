"""Shared pieces of the IoT Hub AMQP guide's uAMQP flows, written for these interop tests.

The guide imports `generate_sas_token` from a helper of its own; this is that helper, following the
token algorithm in Azure's "Control access to IoT Hub" document (HMAC-SHA256 over the URL-encoded
resource URI, a newline and the expiry, keyed with the base64-decoded key).
"""
import base64
import hashlib
import hmac
import json
import logging
import os
import sys
import time
import urllib.parse

if os.environ.get("IOTHUB_INTEROP_DEBUG"):
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)


def generate_sas_token(uri, key, policy_name, expiry=3600):
    ttl = int(time.time() + expiry)
    sign_key = "%s\n%d" % (urllib.parse.quote_plus(uri), ttl)
    signature = base64.b64encode(hmac.HMAC(base64.b64decode(key), sign_key.encode("utf-8"), hashlib.sha256).digest())
    fields = {"sr": uri, "sig": signature, "se": str(ttl)}
    if policy_name is not None:
        fields["skn"] = policy_name
    return "SharedAccessSignature " + urllib.parse.urlencode(fields)


def service_uri(hub_name, hostname, policy_name, access_key, operation):
    """amqps://{policy}@sas.root.{hub}:{token}@{host}{operation}, as the guide's service client builds it."""
    username = "{}@sas.root.{}".format(policy_name, hub_name)
    token = generate_sas_token(hostname, access_key, policy_name)
    return "amqps://{}:{}@{}{}".format(urllib.parse.quote_plus(username), urllib.parse.quote_plus(token), hostname, operation)


def device_uri(hub_name, hostname, device_id, access_key, operation):
    """amqps://{device}@sas.{hub}:{token}@{host}{operation}, as the guide's device client builds it."""
    username = "{}@sas.{}".format(device_id, hub_name)
    token = generate_sas_token("{}/devices/{}".format(hostname, device_id), access_key, None)
    return "amqps://{}:{}@{}{}".format(urllib.parse.quote_plus(username), urllib.parse.quote_plus(token), hostname, operation)


def text(value):
    """AMQP values as JSON-friendly text (uAMQP hands strings back as bytes)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {text(k): text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [text(v) for v in value]
    if isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


def emit(result):
    """The one line the test reads: a JSON object on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def arguments():
    """name=value pairs from the command line."""
    return dict(a.split("=", 1) for a in sys.argv[1:])
