"""``jetgen serve BUNDLE [BUNDLE ...]``: a web page served by the board for sampling, exploring,
drawing and completing (jetgen.serve; docs/serve.md). Standard library only, Python 3.6."""
import click

from jetgen.cli.options import backend_options


@click.command("serve")
@click.argument("bundles", nargs=-1, required=True, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback (e.g. 0.0.0.0 on a Jetson) needs --token.")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="TCP port (0: any free one).")
@click.option("--token", default=None,
              help="Secret every API call must carry; 'auto' makes a random one and prints a URL with it.")
@click.option("--allow-host", "allowed_hosts", multiple=True,
              help="Another name the page may be opened by (the board's DNS name); repeatable.")
@backend_options
@click.option("--max-queue", type=click.IntRange(0, None), default=16, show_default=True,
              help="Requests that may wait per model before the server answers 429.")
@click.option("--timeout", "request_timeout", type=click.FloatRange(0.1, None), default=30.0, show_default=True,
              help="Seconds a request waits for its model (503 after).")
@click.option("--job-timeout", type=click.FloatRange(1, None), default=120.0, show_default=True,
              help="Seconds one completion may take.")
def serve(bundles, host, port, token, allowed_hosts, backend, precision, device, threads, max_queue, request_timeout,
          job_timeout):
    """Serve BUNDLES on a web page: sample, explore latents, draw and complete.

    \b
    jetgen serve cvae.jetgen                                   # http://127.0.0.1:8080/ on this machine
    jetgen serve cvae.jetgen --host 0.0.0.0 --token auto       # on a Jetson: open the printed URL on a laptop
    """
    from jetgen.serve.server import serve as run_server

    run_server(list(bundles), host=host, port=port, token=token, backend=backend, precision=precision,
               device=device, threads=threads, allowed_hosts=allowed_hosts, max_queue=max_queue,
               request_timeout=request_timeout, job_timeout=job_timeout)
