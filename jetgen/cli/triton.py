"""``jetgen triton BUNDLE -o REPO``: write a bundle as an NVIDIA Triton Inference Server model repository.

    jetgen triton digits.jetgen -o models/            # one model per graph + the Python model "digits-cvae"
    tritonserver --model-repository models/           # on a Jetson (Triton's JetPack release) or a GPU server

docs/triton.md describes the layout and how to run it.
"""
import click

from jetgen.cli.options import key_option
from jetgen.triton import config as tconfig


@click.command("triton")
@click.argument("bundle", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(), help="The model repository directory to write.")
@click.option("--name", default=None, help="The Python model's name (graph models are NAME_decoder, ...); "
                                           "default: the bundle's name.")
@click.option("--max-batch", type=int, default=None, help="Cap every graph model's max_batch_size "
                                                          "(default: the bundle's batch.max).")
@click.option("--instances", type=int, default=1, show_default=True, help="Instances of each model (instance_group).")
@click.option("--backend", type=click.Choice(sorted(tconfig.PLATFORMS)), default="onnxruntime", show_default=True,
              help="onnxruntime: the ONNX graphs (platform onnxruntime_onnx); tensorrt: the engines "
                   "`jetgen build` made (platform tensorrt_plan).")
@click.option("--mode", type=click.Choice(tconfig.MODES), default="bls", show_default=True,
              help="Where the Python model runs the graphs: through the graph models (bls: Triton's business "
                   "logic scripting; the stub needs only numpy) or in its own process (local: needs onnxruntime "
                   "in Triton's Python).")
@click.option("--tensorrt", default=None, help="--backend tensorrt: the serving machine's TensorRT version.")
@click.option("--gpu", default=None, help="--backend tensorrt: the serving GPU's name, as `jetgen build` records it.")
@click.option("--force", is_flag=True, help="Replace REPO when it exists.")
@key_option
def triton(bundle, out, name, max_batch, instances, backend, mode, tensorrt, gpu, force):
    """Write BUNDLE as a Triton model repository at REPO."""
    from jetgen.triton.repository import export_repository, options

    opts = options(name=name, max_batch=max_batch, instances=instances, backend=backend, mode=mode,
                   tensorrt=tensorrt, gpu=gpu, force=force)
    index = export_repository(bundle, out, opts)
    click.echo("Wrote {}: Python model {!r} ({} mode), graph models {} ({}).".format(
        out, index["python_model"], index["mode"], ", ".join(sorted(index["graph_models"].values())), backend))
