"""Writes one record to a Kafka broker over the raw protocol (Produce v3,
record batch v2), with header names as given bytes: what no Kafka client
library lets a caller write, for tests of records that do not follow the
usual rules. Usage: raw_produce.py HOST:PORT TOPIC PARTITION VALUE-HEX HEADER-NAME-HEX=VALUE-HEX..."""
import socket
import struct
import sys
import time

def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def varint(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def record(value, headers):
    body = b"\x00" + varint(0) + varint(0) + varint(-1)
    body += varint(len(value)) + value
    body += varint(len(headers))
    for name, val in headers:
        body += varint(len(name)) + name + varint(len(val)) + val
    return varint(len(body)) + body

def batch(value, headers):
    now = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", 0, 0, now, now, -1, -1, -1, 1) + record(value, headers)
    crc = crc32c(after_crc)
    rest = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(rest)) + rest

def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b

def main():
    host, port = sys.argv[1].rsplit(":", 1)
    topic, partition, value = sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])
    headers = [tuple(bytes.fromhex(p) for p in h.split("=")) for h in sys.argv[5:]]
    records = batch(value, headers)
    body = struct.pack(">h", -1) + struct.pack(">hi", 1, 10000)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">i", partition) + struct.pack(">i", len(records)) + records
    request = struct.pack(">hhi", 0, 3, 1) + string("raw-produce") + body
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", conn.recv(4))[0]
        data = b""
        while len(data) < size:
            data += conn.recv(size - len(data))
    # correlation id, topics count, topic, partitions count, partition, error code
    offset = 4 + 4
    name_len = struct.unpack(">h", data[offset:offset + 2])[0]
    offset += 2 + name_len + 4 + 4
    error = struct.unpack(">h", data[offset:offset + 2])[0]
    if error:
        sys.exit(f"produce failed: error {error}")
    print(struct.unpack(">q", data[offset + 2:offset + 10])[0])

if __name__ == "__main__":
    main()
