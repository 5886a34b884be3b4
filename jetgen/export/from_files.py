"""Export a model given as files: ``jetgen export --module FILE.py:ATTR --weights FILE`` (or the same
options in a ``--spec`` JSON file). The module comes from a Python file (or an importable module),
the weights from a state_dict file:

- ``--module my_vae.py:build``: ``build`` is a function returning the nn.Module, an nn.Module class
  (instantiated without arguments) or a module instance;
- ``--weights vae.pt`` (``torch.load(weights_only=True)``: tensors only, never a pickled object) or
  ``vae.safetensors``. A pickled full model is refused: save ``model.state_dict()`` instead.
"""
import importlib
import importlib.util
import os
import sys

from jetgen.errors import JetgenError

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")  # common wrappers around a state_dict


def load_module(spec):
    """The nn.Module named by ``spec`` ("path/to/file.py:attr" or "package.module:attr")."""
    from torch import nn

    where, _, attr = str(spec).rpartition(":")
    if not where or not attr:
        raise JetgenError("--module must be FILE.py:NAME or package.module:NAME (a function or class that builds "
                          "the model), not {!r}.".format(spec))
    python = _import(where)
    if not hasattr(python, attr):
        raise JetgenError("{} has no {!r}; name the function or class that builds your model.".format(where, attr))
    obj = getattr(python, attr)
    try:
        made = obj() if callable(obj) and not isinstance(obj, nn.Module) else obj
    except Exception as err:  # the user's constructor can raise anything
        raise JetgenError("Calling {}() to build the model failed ({}: {}); it must build the model without "
                          "arguments.".format(attr, type(err).__name__, err))
    if not isinstance(made, nn.Module):
        raise JetgenError("{}:{} gave a {}, not a torch.nn.Module.".format(where, attr, type(made).__name__))
    return made


def _import(where):
    if where.endswith(".py"):
        if not os.path.isfile(where):
            raise JetgenError("No Python file at {}; give the file that defines your model.".format(where))
        name = "jetgen_user_" + os.path.splitext(os.path.basename(where))[0]
        spec = importlib.util.spec_from_file_location(name, os.path.abspath(where))
        python = importlib.util.module_from_spec(spec)
        sys.path.insert(0, os.path.dirname(os.path.abspath(where)))  # its own imports of sibling files
        try:
            sys.modules[name] = python  # classes pickle and deep-copy by module name
            spec.loader.exec_module(python)
        except Exception as err:  # running the user's file can raise anything
            sys.modules.pop(name, None)
            raise JetgenError("Running {} failed ({}: {}); fix the file so that it imports cleanly.".format(
                where, type(err).__name__, err))
        finally:
            sys.path.pop(0)
        return python
    try:
        return importlib.import_module(where)
    except ImportError as err:
        raise JetgenError("Cannot import {} ({}); give FILE.py:NAME or an importable module.".format(where, err))


def read_state_dict(path):
    """The tensors of a state_dict file (.safetensors, or a torch.save file read with weights_only=True)."""
    import torch

    if not os.path.isfile(path):
        raise JetgenError("No weights file at {}; save them with torch.save(model.state_dict(), PATH).".format(path))
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as err:  # safetensors raises its own types on damaged files
            raise JetgenError("{} is not a readable safetensors file ({}).".format(path, err))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for pickled objects, others for damaged files
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise JetgenError("{} holds a pickled model object, which jetgen does not load (unpickling runs "
                              "arbitrary code); save the weights with torch.save(model.state_dict(), PATH) and "
                              "pass that file.".format(path))
        raise JetgenError("{} is not a readable torch weights file ({}).".format(path, str(err).splitlines()[0]))
    return _unwrap(state, path)


def _unwrap(state, path):
    import torch

    if isinstance(state, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(state.get(key), dict) and not isinstance(state.get(key), torch.Tensor):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise JetgenError("{} does not hold a state_dict (a dict of tensors); save the weights with "
                          "torch.save(model.state_dict(), PATH).".format(path))
    return state


def load_weights(module, path):
    """Load the state_dict at ``path`` into ``module`` (strict); JetgenError naming missing or extra keys."""
    state = read_state_dict(path)
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # size mismatches
        raise JetgenError("The weights in {} do not fit the model: {}; save model.state_dict() of this same "
                          "class.".format(path, " ".join(str(err).split())[:300]))
    problems = []
    if result.missing_keys:
        problems.append("missing {}".format(", ".join(result.missing_keys[:5])))
    if result.unexpected_keys:
        problems.append("unexpected {}".format(", ".join(result.unexpected_keys[:5])))
    if problems:
        raise JetgenError("The weights in {} do not fit the model ({}); save model.state_dict() of this same "
                          "class.".format(path, "; ".join(problems)))
    return module


def method(module, attr, default, what):
    """``module``'s method ``attr`` (or ``default`` when present, else None for default=None)."""
    name = attr or default
    if name is None:
        return None
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        if attr is None:
            return None
        raise JetgenError("The model ({}) has no method {!r} for the {}; pass --{}-attr with the right name.".format(
            type(module).__name__, name, what, what))
    return fn


# -- the command line's and spec.json's options -----------------------------------------------------

# option -> default; ``jetgen export --module ...`` and a ``--spec`` JSON file use the same names
OPTIONS = {
    "module": None, "weights": None, "latent_dim": None, "target": None, "out": None,
    "decoder_attr": None, "encoder_attr": None, "no_encoder": False, "output": "probs", "output_shape": None,
    "output_range": [0.0, 1.0], "likelihood": "bernoulli", "prior": "normal", "labels": None, "data": None,
    "data_dir": None, "precision": "fp32", "calib_samples": 500, "max_batch": 1024, "name": None, "force": False,
}


def resolve_options(given, spec_path=None):
    """The export options: the command line's ``given`` values (None: not given) over the JSON file at
    ``spec_path`` over OPTIONS' defaults. JetgenError for unknown keys or a missing required one."""
    from jetgen.spec import load_json

    from_file = {}
    if spec_path:
        from_file = load_json(spec_path, "export spec")
        unknown = sorted(set(from_file) - set(OPTIONS)) if isinstance(from_file, dict) else ["(not an object)"]
        if unknown:
            raise JetgenError("{} has unknown keys {}; it may hold: {}.".format(
                spec_path, ", ".join(map(str, unknown)), ", ".join(sorted(OPTIONS))))
    opts = dict(OPTIONS)
    opts.update(from_file)
    opts.update({k: v for k, v in given.items() if v is not None and v is not False})
    for key in ("module", "weights", "latent_dim", "target", "out"):
        if opts.get(key) in (None, ""):
            raise JetgenError("Exporting your own model needs --{} (or \"{}\" in the --spec file).".format(
                key.replace("_", "-"), key))
    return opts


def parse_labels(value):
    """Label names from "0..9" (a range), "cat,dog" (a list), a number of labels, or a JSON list."""
    if value is None or isinstance(value, list):
        return value
    text = str(value).strip()
    if ".." in text:
        lo, _, hi = text.partition("..")
        try:
            return [str(i) for i in range(int(lo), int(hi) + 1)]
        except ValueError:
            raise JetgenError("--labels {!r}: a range is written FIRST..LAST, e.g. 0..9.".format(text))
    if text.isdigit():
        return [str(i) for i in range(int(text))]
    return [v.strip() for v in text.split(",") if v.strip()]


def _numbers(value, what, count):
    if isinstance(value, str):
        value = value.split(",")
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        values = []
    if len(values) != count:
        raise JetgenError("{} must be {} numbers separated by commas, not {!r}.".format(what, count, value))
    return values


def load_export_data(name, data_dir, output_shape=None):
    """A data set for parity and calibration: its test split, and its training split to calibrate on
    (images of the output shape's size; 28 pixels when no shape is given)."""
    from jetgen.export.feeds import ExportData
    from jetgen.train.data import load_dataset

    data = load_dataset(name, data_dir, False, int(output_shape[-1]) if output_shape else 28)
    if output_shape and tuple(data.image_shape) != tuple(output_shape):
        raise JetgenError("The {} data set has images of shape {}, but the model makes {}; give matching data."
                          .format(name, tuple(data.image_shape), tuple(output_shape)))
    return ExportData(data.test_x.numpy(), data.test_y.numpy(), data.train_x.numpy(), data.train_y.numpy(),
                      name=data.name)


def export_from_files(opts, log=None):
    """Build the model from ``opts`` (resolve_options), load its weights and export it; the manifest."""
    from jetgen.export.api import export_model

    module = load_weights(load_module(opts["module"]), opts["weights"])
    decoder = method(module, opts["decoder_attr"], "decode", "decoder") or module
    encoder = None if opts["no_encoder"] else method(module, opts["encoder_attr"], "encode", "encoder")
    labels = parse_labels(opts["labels"])
    shape = [int(v) for v in _numbers(opts["output_shape"], "--output-shape", 3)] if opts["output_shape"] else None
    data = load_export_data(opts["data"], opts["data_dir"], shape) if opts["data"] else None
    return export_model(decoder, int(opts["latent_dim"]), opts["out"], opts["target"], encoder=encoder,
                        output=opts["output"], output_shape=shape,
                        output_range=_numbers(opts["output_range"], "--output-range", 2),
                        likelihood=opts["likelihood"], prior=opts["prior"], labels=labels, data=data,
                        precision=opts["precision"], max_batch=int(opts["max_batch"]),
                        calib_samples=int(opts["calib_samples"]), name=opts["name"],
                        metadata={"module": str(opts["module"]), "weights": os.path.basename(str(opts["weights"]))},
                        force=bool(opts["force"]), log=log)
