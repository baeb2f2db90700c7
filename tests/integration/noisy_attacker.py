"""noisy_attacker.py -- a hostile or greedy client for test_noisy_neighbour.py, run as its own process so its
sending is not slowed by the test's GIL. It connects, prints "flooding" once the connection is set up, then
writes as fast as the socket takes until killed (or the emulator closes it: then it prints "closed" and exits 0).
usage:
  noisy_attacker.py publish HOST PORT DEVICE_ID TOKEN   QoS 0 telemetry from one authenticated identity (plain MQTT)
  noisy_attacker.py publish-tls HOST PORT DEVICE_ID TOKEN   the same over MQTT/TLS
  noisy_attacker.py pong HOST PORT                      WebSocket pong frames on the TLS port, no credentials at all
  noisy_attacker.py pong-loop HOST PORT                 the same, reconnecting whenever it is closed (bench)
  noisy_attacker.py http HOST PORT                      pipelined GET /health on the plain HTTP port, answers drained
  noisy_attacker.py amqp HOST PORT                      empty AMQP frames after the SASL header, never authenticating"""

import os
import socket
import ssl
import struct
import sys

BATCH = 1 << 20  # bytes per sendall


def remaining_length(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def mqtt_connect(client_id, username, password):
    var = mqtt_str("MQTT") + bytes([4, 0xC2]) + struct.pack(">H", 60)
    payload = mqtt_str(client_id) + mqtt_str(username) + mqtt_str(password)
    body = var + payload
    return bytes([0x10]) + remaining_length(len(body)) + body


def mqtt_publish_qos0(topic, payload):
    body = mqtt_str(topic) + payload
    return bytes([0x30]) + remaining_length(len(body)) + body


def repeat_to(unit, size):
    return unit * max(1, size // len(unit))


def flood(sock, data, announce=True):
    if announce:
        print("flooding", flush=True)
    try:
        while True:
            sock.sendall(data)
    except (OSError, ssl.SSLError):
        if announce:
            print("closed", flush=True)


def read_until(sock, marker):
    got = b""
    while marker not in got:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("closed before %r: %r" % (marker, got))
        got += chunk
    return got


def tls_client(host, port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(socket.create_connection((host, int(port))), server_hostname="localhost")


def publish(host, port, device_id, token, tls=False):
    sock = tls_client(host, port) if tls else socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(mqtt_connect(device_id, "%s/%s/?api-version=2021-04-12" % (host, device_id), token))
    connack = sock.recv(4)
    if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
        raise SystemExit("CONNECT refused: %r" % connack)
    packet = mqtt_publish_qos0("devices/%s/messages/events/" % device_id, b'{"t":1}')
    flood(sock, repeat_to(packet, BATCH))


def pong(host, port, announce=True):
    sock = tls_client(host, port)
    sock.sendall(("GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
    head = read_until(sock, b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise SystemExit("no upgrade: %r" % head)
    frame = bytes([0x8A, 0x80]) + os.urandom(4)  # a masked, empty pong
    flood(sock, repeat_to(frame, BATCH), announce)


def http_flood(host, port):
    """Pipelined GET /health as fast as the socket takes, the answers read and dropped by a second thread (so
    the emulator's output never backs up: only fairness can protect the others)."""
    import threading
    sock = socket.create_connection((host, int(port)))

    def drain():
        try:
            while sock.recv(1 << 16):
                pass
        except OSError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    flood(sock, repeat_to(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n", 64 * 1024))


def amqp_empty(host, port):
    """The AMQP SASL header, then empty AMQP frames (heartbeats) without ever authenticating."""
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"AMQP\x03\x01\x00\x00")
    if not read_until(sock, b"AMQP\x03\x01\x00\x00").startswith(b"AMQP"):
        raise SystemExit("no AMQP SASL header back")
    flood(sock, repeat_to(b"\x00\x00\x00\x08\x02\x00\x00\x00", BATCH))


def pong_loop(host, port):
    """pong, reconnecting whenever the emulator closes the connection (for the bench)."""
    pong(host, port)
    while True:
        try:
            pong(host, port, announce=False)
        except (OSError, ssl.SSLError, SystemExit):
            pass


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "publish-tls":
        publish(*sys.argv[2:], tls=True)
    else:
        {"publish": publish, "pong": pong, "pong-loop": pong_loop, "http": http_flood,
         "amqp": amqp_empty}[mode](*sys.argv[2:])
