"""``jetgen serve``: a web page served by the runtime itself, for sampling, exploring, drawing and completing.

    from jetgen.serve import make_server, serve
    serve(["digits.jetgen"], host="0.0.0.0", token="auto")        # prints the URL to open; Ctrl-C stops

    server = make_server(["digits.jetgen"], port=0)                 # for tests: an ephemeral port
    threading.Thread(target=server.serve_forever).start(); ...; server.shutdown(); server.close()

Standard library HTTP (``http.server`` with a threading mix-in), numpy and ``jetgen.runtime`` only;
the page's HTML, JavaScript and CSS ship in ``jetgen/serve/static``. The JSON API is documented in
docs/serve.md. Python 3.6 compatible; never torch, never click.
"""
from jetgen.serve.server import make_server, serve  # noqa: F401

__all__ = ["make_server", "serve"]
