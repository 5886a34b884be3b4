"""The HTTP side of ``jetgen serve``: the page's files, the JSON API under /api/, and the rules around them.

    server = make_server(["digits.jetgen"], host="127.0.0.1", port=8080)
    server.serve_forever()                     # or serve([...]) which prints the URL and stops on Ctrl-C

Security model (docs/serve.md): loopback by default; any other address needs a token, compared in
constant time, sent as ``Authorization: Bearer TOKEN`` (or ``?token=`` for event streams); the Host
header must name what was bound (no DNS rebinding); no CORS headers, JSON-only POSTs, and a foreign
Origin is refused; a Content-Security-Policy that allows only the page's own files; bodies, connections,
queues and waits are bounded. One log line per request: client, method, path, status, milliseconds.
Standard library (``http.server`` with ``socketserver.ThreadingMixIn``: ThreadingHTTPServer needs 3.7)
and numpy through the API; Python 3.6 compatible.
"""
import hmac
import io
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from jetgen.errors import JetgenError
from jetgen.serve.api import Api, ApiError

MAX_BODY = 2 * 1024 * 1024   # bytes of one request body (a 28x28 PNG is ~1 kB; a raw 3x64x64 array ~250 kB)
MAX_CONNECTIONS = 64         # connections handled at once; more get 503 at once
MAX_PER_CLIENT = 16          # of those, from one address: a slow client cannot take every slot (a page uses ~4)
READ_TIMEOUT_S = 15.0        # a client that stops sending for this long is dropped
REQUEST_DEADLINE_S = 20.0    # the whole request (line, headers and body) must arrive within this; then dropped
STOP_GRACE_S = 10.0          # on SIGTERM/SIGINT, how long running inferences may take to end
DRAIN_LIMIT = 16 * 1024 * 1024  # bytes of a refused body read and dropped before answering 413
DRAIN_TIMEOUT_S = 2.0
EVENT_PING_S = 10.0          # an idle event stream sends a comment this often
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
STATIC_FILES = {  # URL path -> (file in jetgen/serve/static, content type); nothing else is ever served
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/shapes.js": ("shapes.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
NAME = r"([A-Za-z0-9._-]{1,128})"
# (method, compiled path, handler name); the handlers are Handler.api_* methods
ROUTES = [(method, re.compile("^" + path + "$"), handler) for method, path, handler in (
    ("GET", "/api/info", "info"),
    ("GET", "/api/models", "models"),
    ("GET", "/api/models/" + NAME, "model"),
    ("POST", "/api/models/" + NAME + "/sample", "sample"),
    ("POST", "/api/models/" + NAME + "/decode", "decode"),
    ("POST", "/api/models/" + NAME + "/interpolate", "interpolate"),
    ("POST", "/api/models/" + NAME + "/encode", "encode"),
    ("POST", "/api/models/" + NAME + "/complete", "complete"),
    ("GET", "/api/models/" + NAME + "/directions", "directions"),
    ("GET", "/api/jobs/" + NAME, "poll"),
    ("GET", "/api/jobs/" + NAME + "/events", "events"),
    ("POST", "/api/jobs/" + NAME + "/cancel", "cancel"),
)]
ERROR_SENTENCES = {  # for the errors http.server raises itself, before our handlers run
    400: "The request line or its headers could not be read.",
    408: "The request took too long to arrive.",
    414: "The request line is too long.",
    431: "The request has too many or too long headers.",
    501: "This server answers GET and POST only.",
    505: "This server speaks HTTP/1.0 and HTTP/1.1 only.",
}


def is_loopback(host):
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_wildcard(host):
    return host in ("", "0.0.0.0", "::", "[::]")


def _split_host(value):
    """'name:port' or '[v6]:port' -> (lower-case name, port or None); (None, None) when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None, None
        name, rest = value[:end + 1], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None, None
        port = rest[1:] if rest else None
    else:
        name, sep, port = value.rpartition(":")
        if not sep:
            name, port = value, None
    if port is not None:
        if not port.isdigit() or len(port) > 5:
            return None, None
        port = int(port)
    return name, port


def _local_names():
    """This machine's host name and the addresses it resolves to (for a wildcard bind's Host check)."""
    names = set(LOOPBACK_NAMES)
    host = socket.gethostname().lower()
    names.update([host, host + ".local"])
    try:
        for addr in socket.gethostbyname_ex(host)[2]:
            names.add(addr)
    except (OSError, UnicodeError):
        pass
    return names


def check_token(token):
    """The token to require: None, a new random one for "auto", or the given one when it is long enough."""
    if token is None:
        return None
    if token == "auto":
        return secrets.token_urlsafe(24)
    if not isinstance(token, str) or len(token) < 12 or not all(33 <= ord(ch) < 127 for ch in token):
        raise JetgenError("A token must be at least 12 printable ASCII characters without spaces; or use --token auto.")
    return token


class _DeadlineReader(io.RawIOBase):
    """The connection's receiving side with one deadline for the whole request: each receive may wait
    at most until ``handler.deadline`` (and READ_TIMEOUT_S), so trickling a byte now and then does not
    keep a slot; past the deadline a read raises socket.timeout."""

    def __init__(self, sock, handler):
        io.RawIOBase.__init__(self)
        self._sock, self._handler = sock, handler

    def readable(self):
        return True

    def readinto(self, buf):
        left = self._handler.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the request did not arrive within its deadline")
        self._sock.settimeout(min(READ_TIMEOUT_S, left))
        try:
            return self._sock.recv_into(buf)
        finally:
            self._sock.settimeout(READ_TIMEOUT_S)  # answers are sent under the ordinary timeout


class Handler(BaseHTTPRequestHandler):
    """One connection's requests: static files, the API, errors as JSON sentences, one log line each."""

    server_version = "jetgen-serve"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads to bound
    timeout = READ_TIMEOUT_S

    # -- plumbing --------------------------------------------------------------------------------
    def log_message(self, fmt, *args):  # http.server's own lines are replaced by ours
        pass

    def setup(self):
        BaseHTTPRequestHandler.setup(self)
        self._started = time.monotonic()
        self.deadline = self._started + self.server.request_deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self), 65536)
        self._status = None
        self._sent = False
        self._logged = False

    def _log(self):
        if self._logged or not getattr(self, "command", None):
            return
        self._logged = True
        path = urlsplit(self.path).path if getattr(self, "path", None) else "-"  # never the query (tokens)
        self.server.log("{} {} {} {} {:.1f} ms".format(self.client_address[0], self.command, path[:200],
                                                       self._status or "-", (time.monotonic() - self._started) * 1000))

    def _headers(self, status, content_type, length=None, extra=None, cache="no-store"):
        self.send_response(status)
        self._status = status
        self._sent = True
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", cache)
        for key, value in SECURITY_HEADERS:
            self.send_header(key, value)
        self.send_header("Server-Timing", "app;dur={:.1f}".format((time.monotonic() - self._started) * 1000))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _json(self, status, obj, extra=None):
        try:
            data = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except ValueError:  # NaN or infinity in an answer: a bug, never a broken JSON document
            status, data = 500, json.dumps({"error": "The server produced a non-finite number; see its log."}).encode()
            self.server.log("non-finite number in the answer to {} {}".format(self.command, self.path))
        self._headers(status, "application/json; charset=utf-8", len(data), extra)
        if self.command != "HEAD":
            self.wfile.write(data)

    def parse_request(self):
        """http.server's parser, after refusing at once a request line without a method, a path and a
        version (HTTP/0.9's ``GET /`` would otherwise wait for headers that never come)."""
        words = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n").split()
        if len(words) != 3:
            self.command, self.request_version, self.requestline = None, "HTTP/1.0", "-"
            self.send_error(400)
            return False
        return BaseHTTPRequestHandler.parse_request(self)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (malformed request line, unsupported method) as JSON sentences."""
        self.close_connection = True
        if not hasattr(self, "_started"):
            self._started, self._sent, self._logged = time.monotonic(), False, False
        if self._sent:
            return
        if getattr(self, "request_version", None) == "HTTP/0.9":  # answer garbage with a status line all the same
            self.request_version = "HTTP/1.0"
        try:
            self._json(code, {"error": ERROR_SENTENCES.get(code, message or "The request failed.")})
        except OSError:
            pass
        if getattr(self, "command", None) is None:
            self.command = "-"
        self._status = code
        self._log()

    # -- methods ---------------------------------------------------------------------------------
    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_OPTIONS(self):  # no CORS: a preflight gets no Access-Control-* headers and so fails
        self._handle("OPTIONS")

    def _handle(self, method):
        try:
            self._dispatch(method)
        except ApiError as err:
            self._fail(err.status, err.message, err.headers)
        except JetgenError as err:
            self._fail(400, str(err))
        except (socket.timeout, ConnectionError):
            self.close_connection = True
        except Exception:  # a bug: the client gets a sentence, the log gets the traceback
            self.server.log("error in {} {}:\n{}".format(method, urlsplit(self.path).path, traceback.format_exc()))
            self._fail(500, "The server failed to handle this request; see its log.")
        finally:
            self._log()

    def _fail(self, status, sentence, headers=None):
        if self._sent:  # the answer had started (an event stream): nothing more can be said in it
            self.close_connection = True
            return
        try:
            self._json(status, {"error": sentence}, headers)
        except OSError:
            self.close_connection = True

    def _dispatch(self, method):
        self._check_host()
        parts = urlsplit(self.path)
        path = parts.path
        query = dict((k, v[-1]) for k, v in parse_qs(parts.query, keep_blank_values=True).items())
        if not path.startswith("/api/"):
            if method not in ("GET", "HEAD"):
                raise ApiError(405, "The page's files answer GET only.", {"Allow": "GET"})
            return self._static(path)
        self._check_token(query)
        for route_method, pattern, name in ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                break
        else:
            allowed = sorted(set(m for m, p, _ in ROUTES if p.match(path)))
            if allowed:
                raise ApiError(405, "{} answers {} only.".format(path, " and ".join(allowed)), {"Allow": ", ".join(allowed)})
            raise ApiError(404, "No endpoint {}; see docs/serve.md for the API.".format(path))
        body = self._body() if method == "POST" else None
        return getattr(self, "api_" + name)(*(match.groups() + (body, query)))

    # -- the rules -------------------------------------------------------------------------------
    def _check_host(self):
        host = self.headers.get("Host")
        if not host:
            raise ApiError(400, "The request has no Host header; send one naming this server.")
        name, port = _split_host(host)
        ok = name is not None and (port or 80) == self.server.server_port and self.server.host_allowed(name, self)
        if not ok:
            raise ApiError(400, "Host {!r} is not this server's address; open {} instead.".format(
                host[:100], self.server.url))

    def _check_token(self, query):
        token = self.server.token
        if token is None:
            return
        given = self.headers.get("Authorization", "")
        given = given[len("Bearer "):].strip() if given.startswith("Bearer ") else query.get("token", "")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8")):
            raise ApiError(401, "This server needs its token: open the URL it printed (with #token=...) or send "
                                "Authorization: Bearer TOKEN.", {"WWW-Authenticate": 'Bearer realm="jetgen"'})

    def _body(self):
        origin = self.headers.get("Origin")
        if origin is not None and origin != self.server.origin_for(self.headers.get("Host", "")):
            raise ApiError(403, "Requests from other sites ({}) are refused; use this server's own page.".format(
                origin[:100]))
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "Send the body as JSON with Content-Type: application/json.")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(411, "Send the body with a Content-Length, not chunked.")
        length = self.headers.get("Content-Length")
        if length is None or not re.match(r"^[0-9]{1,15}$", length.strip(" \t")):  # ASCII digits ("²".isdigit())
            self.close_connection = True
            raise ApiError(411, "Send the body with a Content-Length header.")
        length = int(length)
        if length > self.server.max_body:
            self.close_connection = True
            self._drain(length)
            raise ApiError(413, "The body has {} bytes; this server takes at most {}.".format(length, self.server.max_body))
        try:
            data = self.rfile.read(length)
        except socket.timeout:
            self.close_connection = True
            raise ApiError(408, "The body did not arrive within {:.0f} s.".format(self.server.request_deadline))
        if len(data) != length:
            self.close_connection = True
            raise ApiError(400, "The body ended after {} of {} bytes.".format(len(data), length))
        try:
            return json.loads(data.decode("utf-8"), parse_int=_bounded_int)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise ApiError(400, "The body is not valid JSON ({}).".format(str(err)[:120]))

    def _drain(self, length):
        """Read and drop a refused body (up to DRAIN_LIMIT bytes, briefly), so that the client, still
        sending, reads our 413 instead of a connection reset."""
        left = min(length, DRAIN_LIMIT)
        try:
            self.connection.settimeout(DRAIN_TIMEOUT_S)
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except (OSError, ValueError):
            pass

    # -- static files ----------------------------------------------------------------------------
    def _static(self, path):
        entry = STATIC_FILES.get(path)
        if entry is None:
            raise ApiError(404, "No page file {}; open / instead.".format(path[:100]))
        data = self.server.static[entry[0]]
        self._headers(200, entry[1], len(data), cache="no-cache")
        if self.command != "HEAD":
            self.wfile.write(data)

    # -- API handlers (names from ROUTES) --------------------------------------------------------
    def api_info(self, body, query):
        out = self.server.api.info()
        out["auth"] = self.server.token is not None
        self._json(200, out)

    def api_models(self, body, query):
        self._json(200, self.server.api.models())

    def api_model(self, name, body, query):
        self._json(200, self.server.api.model(name))

    def api_sample(self, name, body, query):
        self._json(200, self.server.api.sample(name, body))

    def api_decode(self, name, body, query):
        self._json(200, self.server.api.decode(name, body))

    def api_interpolate(self, name, body, query):
        self._json(200, self.server.api.interpolate(name, body))

    def api_encode(self, name, body, query):
        self._json(200, self.server.api.encode(name, body))

    def api_complete(self, name, body, query):
        status, out = self.server.api.complete(name, body)
        self._json(status, out)

    def api_directions(self, name, body, query):
        self._json(200, self.server.api.directions(name, query))

    def api_poll(self, job_id, body, query):
        self._json(200, self.server.api.poll(job_id, query))

    def api_cancel(self, job_id, body, query):
        self._json(200, self.server.api.cancel(job_id))

    def api_events(self, job_id, body, query):
        """Server-sent events: ``progress`` (step, new losses, images when changed), then one of
        ``done``, ``error`` or ``cancelled`` with the job's final state; a comment line while idle."""
        job = self.server.api.job(job_id)
        self._headers(200, "text/event-stream; charset=utf-8", extra={"X-Accel-Buffering": "no"})
        sent_losses, sent_image, seen = 0, None, -1
        deadline = time.monotonic() + self.server.api.job_timeout + self.server.api.request_timeout + 10
        while time.monotonic() < deadline:
            version = job.wait(seen, EVENT_PING_S)
            if version == seen and not job.over:
                self.wfile.write(b": waiting\n\n")
                self.wfile.flush()
                continue
            seen = version
            snap = job.snapshot(sent_losses)
            sent_losses += len(snap["losses"])
            if snap["images"] is sent_image:
                snap["images"] = None  # unchanged since the last event
            else:
                sent_image = snap["images"]
            over = snap["state"] in ("done", "error", "cancelled")  # from the snapshot, never read twice
            event = snap["state"] if over else "progress"
            self.wfile.write("event: {}\ndata: {}\n\n".format(event, json.dumps(snap, allow_nan=False)).encode("utf-8"))
            self.wfile.flush()
            if over:
                return
        self.wfile.write(b"event: error\ndata: {\"error\": \"The event stream ran past its time limit.\"}\n\n")


def _bounded_int(text):
    """JSON integers beyond 64 bits are refused while parsing (numpy could not hold them)."""
    if len(text.lstrip("-")) > 19 or not -2 ** 63 <= int(text) < 2 ** 63:
        raise ValueError("the integer {}... is too large".format(text[:20]))
    return int(text)


class JetgenServer(socketserver.ThreadingMixIn, HTTPServer):
    """The listening server: ``server_address``, ``url``, ``token``, ``api``; ``serve_forever``,
    ``shutdown`` (from another thread), ``close`` (socket and models)."""

    daemon_threads = True    # Ctrl-C never waits for a slow client
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 32

    def __init__(self, address, family, log, max_connections=MAX_CONNECTIONS, max_per_client=MAX_PER_CLIENT,
                 request_deadline=REQUEST_DEADLINE_S):
        self.address_family = family
        self.log = log
        self.max_connections, self.max_per_client = int(max_connections), int(max_per_client)
        self.request_deadline = float(request_deadline)
        self._count_lock = threading.Lock()
        self._per_client = {}    # client address -> connections being handled
        HTTPServer.__init__(self, address, Handler)

    def active_connections(self):
        """{client address: connections being handled}: empty when every slot is free."""
        with self._count_lock:
            return dict(self._per_client)

    def _take_slot(self, client):
        """Count a connection from ``client``; None when taken, else the sentence of the 503."""
        with self._count_lock:
            if sum(self._per_client.values()) >= self.max_connections:
                return "This server is handling too many connections; try again in a moment."
            if self._per_client.get(client, 0) >= self.max_per_client:
                return "This server is handling too many connections from your address; close some first."
            self._per_client[client] = self._per_client.get(client, 0) + 1
        return None

    def _free_slot(self, client):
        with self._count_lock:
            left = self._per_client.get(client, 1) - 1
            if left > 0:
                self._per_client[client] = left
            else:
                self._per_client.pop(client, None)

    def server_bind(self):
        # HTTPServer.server_bind looks up the host's name (socket.getfqdn), which can stall without DNS
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[0], self.server_address[1]

    def process_request(self, request, client_address):
        refused = self._take_slot(client_address[0])
        if refused is not None:
            body = json.dumps({"error": refused}).encode("utf-8")
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
                                str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        socketserver.ThreadingMixIn.process_request(self, request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            socketserver.ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            self._free_slot(client_address[0])

    def host_allowed(self, name, handler):
        if name in self.host_names:
            return True
        if self.wildcard:  # bound to every interface: the address the client connected to is ours
            local = handler.connection.getsockname()[0]
            return name.strip("[]") == local.lower() or (is_loopback(local) and name in LOOPBACK_NAMES)
        return False

    def origin_for(self, host):
        return "http://" + host.strip()

    def close(self):
        """Stop listening and close every model's sessions."""
        self.server_close()
        self.api.close()

    def stop(self, grace=STOP_GRACE_S):
        """Stop listening, cancel every job, let running inferences end (up to ``grace`` seconds) and
        close the sessions of the models that are idle then. Returns how many models were still busy
        (their sessions left open: tearing them down under a running inference aborts the process)."""
        self.server_close()
        return self.api.stop(grace)


def make_server(bundles, host="127.0.0.1", port=8080, token=None, backend="ort", precision=None, device=None,
                threads=None, log=None, allowed_hosts=(), max_body=MAX_BODY, max_queue=16, request_timeout=30.0,
                job_timeout=120.0, request_deadline=REQUEST_DEADLINE_S, max_per_client=MAX_PER_CLIENT):
    """Open the bundles and listen on host:port; return the server, not yet serving.

    ``token``: None (allowed on loopback only), "auto" (a random one, in ``server.token`` and
    ``server.url``) or a string of at least 12 printable characters. ``backend``, ``precision``,
    ``device``, ``threads`` as for ``jetgen sample``. ``log(line)`` gets one line per request
    (default: stderr). ``allowed_hosts``: more names the Host header may carry (a DNS name of the
    board). ``max_queue``: requests that may wait per model before 429; ``request_timeout``: how long
    one waits for its model (503 after); ``job_timeout``: the whole of one completion;
    ``request_deadline``: seconds for a request's line, headers and body to arrive (the connection is
    dropped after); ``max_per_client``: connections one address may hold at once (503 beyond).
    Raises JetgenError for a non-loopback host without a token, a bad port or token, an address
    already in use, or a bundle the runtime refuses.
    """
    if log is None:
        def log(line):
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise JetgenError("The port must be a whole number from 0 to 65535, not {!r}.".format(port))
    host = host.strip() if isinstance(host, str) else host
    if not isinstance(host, str):
        raise JetgenError("The host must be an address or name to listen on, such as 127.0.0.1 or 0.0.0.0.")
    token = check_token(token)
    if token is None and not is_loopback(host):
        raise JetgenError("Serving on {} lets other machines in: give --token SECRET or --token auto (or serve on "
                          "127.0.0.1).".format(host or "every interface"))
    static = _read_static()
    bind_host = host.strip("[]")
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    try:
        server = JetgenServer((bind_host, port), family, log, max_per_client=min(max_per_client, MAX_CONNECTIONS),
                              request_deadline=request_deadline)
    except OSError as err:
        raise JetgenError("Cannot listen on {}:{} ({}); pick another --port or stop what uses it.".format(
            host, port, err.strerror or err))
    try:
        server.api = Api(bundles, backend=backend, precision=precision, device=device, threads=threads,
                         max_queue=max_queue, request_timeout=request_timeout, job_timeout=job_timeout, log=log)
    except BaseException:
        server.server_close()
        raise
    server.token, server.static, server.max_body = token, static, int(max_body)
    server.wildcard = _is_wildcard(bind_host)
    names = set([bind_host.lower(), "[{}]".format(bind_host.lower()) if family == socket.AF_INET6 else bind_host.lower()])
    if is_loopback(bind_host):
        names.update(LOOPBACK_NAMES)
    if server.wildcard:
        names.update(_local_names())
    names.update(h.lower() for h in allowed_hosts)
    server.host_names = names
    shown = bind_host if not server.wildcard else (socket.gethostname() or "localhost")
    if ":" in shown:
        shown = "[{}]".format(shown)
    server.url = "http://{}:{}/".format(shown, server.server_port) + ("#token=" + token if token else "")
    return server


def _read_static():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
    files = {}
    for name, _ in STATIC_FILES.values():
        path = os.path.join(root, name)
        try:
            with open(path, "rb") as handle:
                files[name] = handle.read()
        except (IOError, OSError):
            raise JetgenError("The page's file {} is missing from this installation; reinstall jetgen.".format(path))
    return files


def serve(bundles, host="127.0.0.1", port=8080, token=None, backend="ort", precision=None, device=None,
          threads=None, allowed_hosts=(), out=None, **options):
    """Serve until SIGINT (Ctrl-C) or SIGTERM: print the URL(s) to open, one log line per request on stderr.

    On the signal the server stops accepting, cancels its jobs, lets running inferences end (up to
    STOP_GRACE_S), closes the models' sessions and returns after one line saying so. An inference
    still running after that is abandoned: the process then ends at once with status 0 (os._exit),
    since tearing a runtime down under it would abort. Arguments as ``make_server``; ``out`` is
    where the URLs and the line go (default stdout). Raises JetgenError as ``make_server`` does."""
    out = out or sys.stdout
    server = make_server(bundles, host=host, port=port, token=token, backend=backend, precision=precision,
                         device=device, threads=threads, allowed_hosts=allowed_hosts, **options)
    caught, previous = [], {}

    def on_signal(signum, frame):
        if caught:  # a second signal while stopping: stop waiting for inferences
            raise KeyboardInterrupt()
        caught.append(signum)
        stopper = threading.Thread(target=server.shutdown, name="stop")  # shutdown() waits for serve_forever
        stopper.daemon = True
        stopper.start()

    if threading.current_thread() is threading.main_thread():  # SIGTERM: systemd, docker stop, a scheduler
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    abandoned, stopped = 0, False
    try:
        names = ", ".join(server.api.order)
        out.write("Serving {} ({} backend) at {}\n".format(names, backend, server.url))
        if server.wildcard:
            for addr in sorted(n for n in server.host_names if _is_ipv4(n) and not is_loopback(n)):
                out.write("  also  http://{}:{}/{}\n".format(addr, server.server_port,
                                                              "#token=" + server.token if server.token else ""))
        out.write("Press Ctrl-C to stop.\n")
        out.flush()
        try:
            server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            caught.append(signal.SIGINT)
        stopped = True
        try:
            abandoned = server.stop(STOP_GRACE_S)
        except KeyboardInterrupt:
            abandoned = len(server.api.slots)
        what = signal.Signals(caught[0]).name if caught else "shutdown"
        out.write("Stopped ({}): no longer listening, jobs cancelled, {}.\n".format(
            what, "models closed" if not abandoned else "{} running inference(s) abandoned".format(abandoned)))
        out.flush()
    finally:
        if not stopped:
            server.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if abandoned:
        sys.stderr.flush()
        os._exit(0)


def _is_ipv4(name):
    try:
        return ipaddress.ip_address(name).version == 4
    except ValueError:
        return False
