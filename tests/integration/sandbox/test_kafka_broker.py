"""The local Kafka launcher: a real broker that answers, and no orphan JVM afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer

from sandbox.kafka_broker import KafkaBroker


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead for our purposes
        return stat.read().split()[2] != "Z"


def test_broker_round_trips_a_record_and_stops_without_an_orphan() -> None:
    broker = KafkaBroker(heap="512m").start()
    pid = broker.pid
    assert pid is not None and _alive(pid)
    topic = f"launcher-{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    producer.produce(topic, b"hello")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "g",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    value = None
    for _ in range(60):
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            value = message.value()
            break
    consumer.close()
    assert value == b"hello"
    broker.stop()
    assert not _alive(pid)


def test_killing_the_owner_takes_the_jvm_with_it() -> None:
    script = ("from sandbox.kafka_broker import KafkaBroker\n"
              "b = KafkaBroker(heap='512m').start()\n"
              "print(b.pid, flush=True)\n"
              "import time; time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    jvm = int(owner.stdout.readline())
    assert _alive(jvm)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    deadline = time.monotonic() + 30
    while _alive(jvm) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(jvm), "the broker outlived its owner"


def test_cluster_ids_never_look_like_an_option() -> None:
    from sandbox.kafka_broker import _cluster_id

    ids = [_cluster_id() for _ in range(5000)]  # ~1 in 64 would start with '-' unchecked
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
