#!/usr/bin/python3
"""A push camera for failover tests: it sends RTP (H.264 from ffmpeg's test source) to
whatever address its HTTP API was last given, the way cameras with a "push destination"
setting do. Standalone (Python's standard library and ffmpeg), so it runs inside a
network namespace: `ip netns exec NS push_camera.py --bind IP --port 80`.

  POST /cgi-bin/stream.cgi   body dest=IP&port=N   (re)starts ffmpeg toward IP:N
  GET  /cgi-bin/stream.cgi   dest=IP&port=N        the current destination

Prints `ready: http://IP:PORT` once listening and `pushing to IP:N` at each change.
"""
import argparse
import http.server
import ipaddress
import signal
import subprocess
import sys
import urllib.parse

state = {"dest": None, "port": None, "proc": None}


def push(dest, port):
    if state["proc"] is not None:
        state["proc"].terminate()
        try:
            state["proc"].wait(5)
        except subprocess.TimeoutExpired:
            state["proc"].kill()
    state["dest"], state["port"] = dest, port
    state["proc"] = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-bf", "0",
         "-f", "rtp", f"rtp://{dest}:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"pushing to {dest}:{port}", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def _answer(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.split("?")[0] != "/cgi-bin/stream.cgi":
            return self._answer(404, "not found\n")
        self._answer(200, f"dest={state['dest'] or ''}&port={state['port'] or ''}\n")

    def do_POST(self):
        if self.path.split("?")[0] != "/cgi-bin/stream.cgi":
            return self._answer(404, "not found\n")
        n = int(self.headers.get("Content-Length") or 0)
        q = urllib.parse.parse_qs(self.rfile.read(n).decode())
        try:
            dest = str(ipaddress.ip_address(q["dest"][0]))
            port = int(q["port"][0])
            assert 0 < port < 65536
        except (KeyError, ValueError, AssertionError):
            return self._answer(400, "dest=IP&port=N expected\n")
        push(dest, port)
        self._answer(200, "OK\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=80)
    a = p.parse_args()
    srv = http.server.ThreadingHTTPServer((a.bind, a.port), Handler)

    def stop(*_):
        if state["proc"] is not None:
            state["proc"].terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"ready: http://{a.bind}:{a.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
