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


def load_module(spec, path=None):
    """The nn.Module named by ``spec`` ("path/to/file.py:attr" or "package.module:attr", importable
    from the directories ``path``, a list or an os.pathsep-separated string, put first on sys.path).

    A file is read the way a script's class is borrowed, not run as a script: its imports, function
    and class definitions and assignments of literal constants are executed, with ``sys.argv`` set to
    the file alone, while its other top-level statements (argparse, data loading, a training loop
    without a main guard) are skipped; a failed import is remembered and named if the model needs it.
    If the model cannot be built that way the whole file is run, still with its own argv and with
    ``SystemExit`` caught. JetgenError with one sentence for anything that fails."""
    from torch import nn

    where, _, attr = str(spec).rpartition(":")
    if not where or not attr or (len(where) == 1 and where.isalpha()):  # "C:" of a Windows path, no attr
        raise JetgenError("--module must be FILE.py:NAME or package.module:NAME (a function or class that builds "
                          "the model), not {!r}.".format(spec))
    dirs = [d for d in (path.split(os.pathsep) if isinstance(path, str) else list(path or ())) if d]
    missing = [d for d in dirs if not os.path.isdir(d)]
    if missing:
        raise JetgenError("--path {} is not a directory; give the folder your package or module lives in.".format(
            missing[0]))
    with _shielded(dirs, where):
        if where.endswith(".py"):
            return _build_from_file(where, attr)
        python = _import_module(where)
        return _build(python, where, attr, nn)


class _shielded(object):
    """sys.argv = [the file], the given directories first on sys.path, both restored afterwards."""

    def __init__(self, dirs, where):
        self.dirs, self.where = [os.path.abspath(d) for d in dirs], where

    def __enter__(self):
        self.argv, self.path = sys.argv, list(sys.path)
        sys.argv = [self.where]
        sys.path[:0] = self.dirs

    def __exit__(self, *exc):
        sys.argv = self.argv
        sys.path[:] = self.path
        return False


def _build(python, where, attr, nn, missing=()):
    if not hasattr(python, attr):
        raise JetgenError("{} has no {!r}; name the function or class that builds your model.".format(where, attr))
    obj = getattr(python, attr)
    try:
        made = obj() if callable(obj) and not isinstance(obj, nn.Module) else obj
    except SystemExit as err:
        raise JetgenError("Calling {}() to build the model exited (SystemExit {}); it must build the model without "
                          "arguments and without parsing the command line.".format(attr, err.code))
    except NameError as err:
        raise _missing_name(where, attr, err, missing)
    except Exception as err:  # the user's constructor can raise anything
        raise JetgenError("Calling {}() to build the model failed ({}: {}); it must build the model without "
                          "arguments.".format(attr, type(err).__name__, err))
    if not isinstance(made, nn.Module):
        raise JetgenError("{}:{} gave a {}, not a torch.nn.Module.".format(where, attr, type(made).__name__))
    return made


def _missing_name(where, attr, err, missing):
    name = getattr(err, "name", None) or str(err)
    for imported, problem in missing:
        if name in imported:
            return JetgenError("{} needs {!r} to build {}, and its import failed ({}); install it (pip install "
                               "{}) or move the model's class into a file that does not import it.".format(
                                   where, name, attr, problem, problem.split("'")[1] if "'" in problem else name))
    return JetgenError("Building {} from {} failed ({}); jetgen runs only the file's imports, definitions and "
                       "constants, so define what the model needs there.".format(attr, where, err))


def _build_from_file(where, attr):
    """Build ``attr`` from the definitions of the file ``where`` (see load_module), else by running it."""
    from torch import nn

    if not os.path.isfile(where):
        raise JetgenError("No Python file at {}; give the file that defines your model.".format(where))
    name = "jetgen_user_" + os.path.splitext(os.path.basename(where))[0]
    sys.path.insert(0, os.path.dirname(os.path.abspath(where)))  # its own imports of sibling files
    python, missing = _definitions(where, name)
    if not hasattr(python, attr):  # made by the script's own top-level code (model = VAE())
        return _build(_run_file(where, name), where, attr, nn)
    try:
        return _build(python, where, attr, nn, missing)
    except JetgenError as first:
        if not isinstance(first.__cause__ or first.__context__, NameError):
            raise
        whole = _run_file(where, name)  # the model needs what the script computes at the top level
        try:
            return _build(whole, where, attr, nn)
        except JetgenError:
            raise first


def _definitions(where, name):
    """A module object holding the file's imports, definitions and literal constants; and the imports
    that failed, as (names they bind, why)."""
    import ast
    import types

    with open(where, encoding="utf-8") as handle:
        text = handle.read()
    try:
        tree = ast.parse(text, filename=where)
    except SyntaxError as err:
        raise JetgenError("{} line {} is not valid Python ({}); fix the file.".format(where, err.lineno, err.msg))
    python = types.ModuleType(name)
    python.__file__ = os.path.abspath(where)
    sys.modules[name] = python  # classes pickle and deep-copy by module name
    missing = []
    for node in tree.body:
        if not _kept(node):
            continue
        code = compile(ast.Module(body=[node], type_ignores=[]), where, "exec")
        try:
            exec(code, python.__dict__)
        except ImportError as err:
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                raise JetgenError("Running {} line {} failed ({}: {}).".format(where, node.lineno, type(err).__name__,
                                                                               err))
            bound = [(a.asname or a.name).split(".")[0] for a in node.names]
            missing.append((bound, "{}: {}".format(type(err).__name__, err)))
        except Exception as err:  # a definition's decorator or a default argument can raise anything
            raise JetgenError("Running {} line {} failed ({}: {}); fix the file so that its definitions "
                              "import cleanly.".format(where, node.lineno, type(err).__name__, err))
    return python, missing


def _kept(node):
    """True for the top-level statements a model's definition can need: imports, functions, classes,
    and assignments of constants (literals, or names and calls of them: HIDDEN = 400)."""
    import ast

    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        try:
            ast.literal_eval(node.value)
            return True
        except ValueError:
            return False
    return False


def _run_file(where, name):
    """Run the whole file as a module (argv shielded by the caller); JetgenError for any failure."""
    spec = importlib.util.spec_from_file_location(name, os.path.abspath(where))
    python = importlib.util.module_from_spec(spec)
    sys.modules[name] = python
    try:
        spec.loader.exec_module(python)
    except SystemExit as err:
        sys.modules.pop(name, None)
        raise JetgenError("Running {} exited (SystemExit {}): it parses its own command line or quits at the top "
                          "level; put the script part under `if __name__ == \"__main__\":`.".format(where, err.code))
    except ImportError as err:
        sys.modules.pop(name, None)
        raise JetgenError("Running {} failed: it imports {}, which is not installed ({}); install it, or move the "
                          "model's class into a file that does not need it.".format(
                              where, getattr(err, "name", None) or "a module", err))
    except Exception as err:  # running the user's file can raise anything
        sys.modules.pop(name, None)
        raise JetgenError("Running {} failed ({}: {}); fix the file so that it imports cleanly.".format(
            where, type(err).__name__, err))
    return python


def _import_module(where):
    try:
        return importlib.import_module(where)
    except SystemExit as err:
        raise JetgenError("Importing {} exited (SystemExit {}); put its script part under `if __name__ == "
                          "\"__main__\":`.".format(where, err.code))
    except ImportError as err:
        raise JetgenError("Cannot import {} ({}); give FILE.py:NAME, or the folder it is importable from with "
                          "--path DIR.".format(where, err))
    except Exception as err:  # the user's package can raise anything on import
        raise JetgenError("Importing {} failed ({}: {}); fix it so that it imports cleanly.".format(
            where, type(err).__name__, err))


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
    "output_range": None, "likelihood": None, "prior": "normal", "labels": None, "data": None,
    "data_dir": None, "precision": "fp32", "calib_samples": 500, "max_batch": None, "name": None, "force": False,
    # foreign models (docs/bring-your-own-model.md): where a package lives, dict outputs, one
    # concatenated input, the encoder's input form, the prior's mixture size, point-cloud settings
    "path": None, "decoder_output": None, "encoder_keys": None, "encoder_input": "auto", "condition": "separate",
    "prior_components": None, "kind": None, "arch": "custom", "metadata": None,
    "patches": None, "grid": None, "faces": None, "encoder_points": None, "target_points": None, "loss_scale": None,
    "prior_weight": None,
}
POINT_OPTIONS = ("patches", "grid", "faces", "encoder_points", "target_points", "loss_scale", "prior_weight")


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


def resolve_prior(value, latent_dim, components=None):
    """The ``prior`` export_model takes from an option: "normal", a JSON object (a prior description:
    {"family": "gaussian" | "exponential" | "uniform" | "gmm", "params": {...}}), a .json file
    holding one (a jetgen run's latent_prior.json too), or a .npy latent table (N, D) (a trained
    auto-decoder's codes, encoder means of the training set) fitted as a diagonal gaussian, or a
    ``components``-component gaussian mixture."""
    import numpy as np

    if isinstance(value, dict) or value in (None, "normal", "gaussian", "standard_normal"):
        return value or "normal"
    text = str(value)
    if text.endswith(".json"):
        from jetgen.spec import load_json

        return load_json(text, "prior description")
    if text.endswith(".npy"):
        if not os.path.isfile(text):
            raise JetgenError("No latent table at {}; save your codes with numpy.save(PATH, codes).".format(text))
        try:
            codes = np.load(text, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise JetgenError("{} is not a readable .npy array ({}).".format(text, err))
        if codes.ndim != 2 or codes.shape[1] != int(latent_dim) or len(codes) < 2 or not np.isfinite(codes).all():
            raise JetgenError("The latent table {} must be finite numbers of shape (N >= 2, {}), not {}.".format(
                text, latent_dim, codes.shape))
        if components:
            from jetgen.train.latent_gmm import fit_latent_gmm

            return fit_latent_gmm(codes, components=int(components))
        return {"family": "gaussian", "params": {"mean": codes.mean(0).tolist(),
                                                 "std": np.maximum(codes.std(0), 1e-6).tolist()}}
    if text.lstrip().startswith("{"):
        import json

        try:
            return json.loads(text)
        except ValueError as err:
            raise JetgenError("--prior {!r} is not valid JSON ({}).".format(text[:80], err))
    raise JetgenError("--prior must be normal, a prior description (.json or a JSON object) or a latent table "
                      "(.npy), not {!r}.".format(text))


def load_array_data(path):
    """Examples from a .npy (or .npz with x and optional y) file: images (N, C, H, W) or clouds
    (N, P, 3), with labels when the .npz has them."""
    import numpy as np

    if not os.path.isfile(path):
        raise JetgenError("No data file at {}; give digits, mnist, folder, or a .npy/.npz file.".format(path))
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise JetgenError("{} is not a readable .npy/.npz file ({}).".format(path, err))
    if path.endswith(".npz"):
        if "x" not in data:
            raise JetgenError("{} must hold an array named x (and optionally y, the labels).".format(path))
        return (data["x"], data["y"]) if "y" in data else data["x"]
    return data


def points_settings(opts):
    """export_model's ``points`` from the point-cloud options; faces "grid" (or none given): the
    triangles of K square patches of G x G grid vertices (patch-major, each grid row-major)."""
    import numpy as np

    given = dict((k, opts[k]) for k in POINT_OPTIONS if opts.get(k) is not None)
    for key in ("patches", "grid", "encoder_points"):
        if key not in given:
            raise JetgenError("--output points needs --{} (or \"{}\" in the --spec file).".format(
                key.replace("_", "-"), key))
    settings = {k: int(given[k]) for k in ("patches", "grid", "encoder_points", "target_points") if k in given}
    settings.update({k: float(given[k]) for k in ("loss_scale", "prior_weight") if k in given})
    faces = given.get("faces", "grid")
    if faces == "grid":
        from jetgen.models.atlasnet import grid_faces

        faces = grid_faces(settings["patches"], settings["grid"])
    elif isinstance(faces, str):
        if not os.path.isfile(faces):
            raise JetgenError("No faces file at {}; give an int (F, 3) .npy file or \"grid\".".format(faces))
        faces = np.load(faces, allow_pickle=False)
    settings["faces"] = faces
    return settings


def _key(value):
    """An output key: a position when it is a number."""
    if value is None:
        return None
    return int(value) if str(value).lstrip("-").isdigit() else str(value)


def _metadata(opts):
    """The provenance the manifest records: the module and weights file, and the spec's ``metadata``."""
    record = {"module": str(opts["module"]), "weights": os.path.basename(str(opts["weights"]))}
    extra = opts.get("metadata")
    if extra is not None and not isinstance(extra, dict):
        raise JetgenError("\"metadata\" in the --spec file must be an object of JSON values, not {}.".format(
            type(extra).__name__))
    record.update(extra or {})
    return record


def export_from_files(opts, log=None):
    """Build the model from ``opts`` (resolve_options), load its weights and export it; the manifest."""
    from jetgen.export.api import export_model

    module = load_weights(load_module(opts["module"], opts["path"]), opts["weights"])
    decoder = method(module, opts["decoder_attr"], "decode", "decoder") or module
    encoder = None if opts["no_encoder"] else method(module, opts["encoder_attr"], "encode", "encoder")
    labels = parse_labels(opts["labels"])
    cloud = opts["output"] == "points"
    count = 2 if cloud else 3
    shape = [int(v) for v in _numbers(opts["output_shape"], "--output-shape", count)] if opts["output_shape"] else None
    data = opts["data"]
    if data and (str(data).endswith(".npy") or str(data).endswith(".npz")):
        data = load_array_data(data)
    elif data:
        data = load_export_data(data, opts["data_dir"], shape)
    extra = {}
    if opts["encoder_keys"]:
        extra["encoder_keys"] = [k.strip() for k in opts["encoder_keys"].split(",")] \
            if isinstance(opts["encoder_keys"], str) else list(opts["encoder_keys"])
    if cloud:
        extra["points"] = points_settings(opts)
    elif any(opts.get(k) is not None for k in POINT_OPTIONS):
        raise JetgenError("--patches, --grid, --faces and the other point-cloud options need --output points.")
    if opts["max_batch"] is not None:
        extra["max_batch"] = int(opts["max_batch"])
    elif cloud:
        from jetgen.export.exporter import POINTS_MAX_BATCH

        extra["max_batch"] = POINTS_MAX_BATCH
    output_range = _numbers(opts["output_range"], "--output-range", 2) if opts["output_range"] is not None else None
    return export_model(decoder, int(opts["latent_dim"]), opts["out"], opts["target"], encoder=encoder,
                        output=opts["output"], output_shape=shape, output_range=output_range,
                        likelihood=opts["likelihood"],
                        prior=resolve_prior(opts["prior"], opts["latent_dim"], opts["prior_components"]),
                        labels=labels, data=data, precision=opts["precision"],
                        calib_samples=int(opts["calib_samples"]), name=opts["name"],
                        metadata=_metadata(opts), arch=opts["arch"],
                        force=bool(opts["force"]), log=log, output_key=_key(opts["decoder_output"]),
                        encoder_input=opts["encoder_input"], condition=opts["condition"], kind=opts["kind"], **extra)
