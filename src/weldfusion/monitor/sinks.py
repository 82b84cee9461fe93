"""Where events go: a JSON Lines file, and an MQTT topic (paho-mqtt) for alerts and verdicts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import IO

import paho.mqtt.client as mqtt

from weldfusion.errors import InputError

PUBLISHED = ("alert", "verdict")  # event types sent to MQTT


class JsonlSink:
    """One event per line, flushed as it comes (a reader can follow the file)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.file: IO[str] = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{path}: cannot write the events file ({exc.strerror})") from None

    def __call__(self, events: list[dict]) -> None:
        for event in events:
            self.file.write(json.dumps(event, allow_nan=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def parse_mqtt(spec: str) -> tuple[str, int, str]:
    """`HOST:PORT/TOPIC` (the topic may hold further slashes) -> (host, port, topic)."""
    match = re.fullmatch(r"([^:/\s]+|\[[0-9a-fA-F:]+\]):(\d{1,5})/(\S+)", spec)
    if not match or not 0 < int(match.group(2)) < 65536 or any(c in match.group(3) for c in "+#"):
        raise InputError(f"--mqtt {spec!r}: expected HOST:PORT/TOPIC, e.g. localhost:1883/weld/alerts (no + or # in the topic)")
    return match.group(1).strip("[]"), int(match.group(2)), match.group(3)


class MqttSink:
    """Publishes alerts and verdicts to one topic as JSON (QoS 1, in order); refuses at once when the
    broker cannot be reached."""

    def __init__(self, spec: str, timeout: float = 10.0):
        self.host, self.port, self.topic = parse_mqtt(spec)
        self.timeout = timeout
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(1)  # one message in flight at a time: delivered in order
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise InputError(f"--mqtt {spec}: cannot connect to the broker ({exc.__class__.__name__}: {exc})") from None
        self.client.loop_start()
        self.pending: list[mqtt.MQTTMessageInfo] = []

    def __call__(self, events: list[dict]) -> None:
        for event in events:
            if event["type"] in PUBLISHED:
                self.pending.append(self.client.publish(self.topic, json.dumps(event, allow_nan=False), qos=1))
        self.pending = [info for info in self.pending if not info.is_published()]

    def close(self) -> None:
        """Wait until every message is delivered, then disconnect."""
        try:
            for info in self.pending:
                info.wait_for_publish(self.timeout)
            lost = sum(not info.is_published() for info in self.pending)
            if lost:
                raise InputError(f"--mqtt {self.host}:{self.port}/{self.topic}: {lost} message(s) not delivered within {self.timeout:g} s")
        except RuntimeError as exc:  # paho: the connection was lost
            raise InputError(f"--mqtt {self.host}:{self.port}/{self.topic}: {exc}") from None
        finally:
            self.client.disconnect()
            self.client.loop_stop()
