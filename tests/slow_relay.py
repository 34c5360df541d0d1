"""A TCP relay for fault tests, run as its own process:

    python slow_relay.py LISTEN_PORT TARGET_HOST:TARGET_PORT PORT_FILE RATE

Listens on 127.0.0.1:LISTEN_PORT (0: any free port, written to PORT_FILE once
listening), relays every connection to the target byte for byte (TLS passes through
untouched), and sends what the target answers back at RATE bytes per second at most:
a large answer then takes a while to arrive, so that a test can kill this process (or
either end) while one is on its way. Stopped by a signal; it never connects anywhere
but the target.
"""
import os
import socket
import sys
import threading
import time

CHUNK = 8192


def pump(src, dst, rate):
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
            if rate:
                time.sleep(len(data) / rate)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(port, target, port_file, rate):
    host, tport = target.rsplit(":", 1)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(listener.getsockname()[1]))
    os.replace(tmp, port_file)
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection((host, int(tport)), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        threading.Thread(target=pump, args=(client, upstream, 0), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, rate), daemon=True).start()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]))
