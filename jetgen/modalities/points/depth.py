"""Depth images to point clouds: one view from an RGB-D camera as the partial cloud to complete.

    depth = read_depth("depth.png")                       # (H, W) float32 metres (16-bit PNG: mm * 0.001)
    cam = read_intrinsics("camera.json")                  # Intrinsics(fx, fy, cx, cy, width, height)
    points = backproject(depth, cam, read_mask("mask.png", depth.shape))   # (P, 3) camera frame

The camera frame is OpenCV's pinhole frame: x right, y down, z forward, metres; a pixel (u, v) with
depth d back-projects to ((u - cx) d / fx, (v - cy) d / fy, d). Depth 0 (no reading), NaN and masked
pixels are dropped. Intrinsics are read from the common JSON layouts (``read_intrinsics``). PNGs go
through the project's one PNG reader (jetgen.runtime.images), which bounds the pixel count before
decoding. Every problem raises JetgenError. numpy and the standard library; Python 3.6 compatible.
"""
import json
import os

import numpy as np

from jetgen.errors import JetgenError
from jetgen.atomic import atomic_write_bytes
from jetgen.modalities.image.codec import MAX_INPUT_BYTES, PNG_SIGNATURE, encode_png, load_npy, png_header, read_image

PNG_DEPTH_SCALE = 0.001  # metres per unit of a 16-bit depth PNG (millimetres: RealSense, Kinect, Orbbec, TUM x5)
MAX_JSON_BYTES = 1024 * 1024  # a camera file is a few hundred bytes
MAX_DEPTH_M = 1000.0  # readings farther than this (after scaling) are refused as a wrong depth scale
# where a camera file keeps its numbers, first match wins (ROS CameraInfo, OpenCV, Open3D, RealSense, ...)
MATRIX_KEYS = ("K", "k", "camera_matrix", "intrinsic_matrix", "intrinsics_matrix", "intrinsic", "cameraMatrix")
PRINCIPAL_KEYS = (("cx", "cy"), ("ppx", "ppy"), ("u0", "v0"))
FOCAL_KEYS = (("fx", "fy"), ("fl_x", "fl_y"))
SIZE_KEYS = (("width", "height"), ("w", "h"), ("image_width", "image_height"))
NESTED_KEYS = ("intrinsics", "intrinsic", "camera", "depth", "cam")
EXTRINSIC_KEYS = ("extrinsics", "extrinsic", "T", "matrix", "transform", "pose", "camera_to_world", "cam2world")
RIGID_TOL = 1e-3  # an extrinsic rotation must be orthonormal to this


class Intrinsics(object):
    """A pinhole camera: focal lengths and principal point in pixels, and the image size when known."""

    def __init__(self, fx, fy, cx, cy, width=None, height=None):
        self.fx, self.fy, self.cx, self.cy = float(fx), float(fy), float(cx), float(cy)
        self.width = None if width is None else int(width)
        self.height = None if height is None else int(height)

    def as_dict(self):
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width,
                "height": self.height}

    @property
    def matrix(self):
        """The 3x3 camera matrix K (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def __repr__(self):
        return "Intrinsics(fx={:g}, fy={:g}, cx={:g}, cy={:g}, width={}, height={})".format(
            self.fx, self.fy, self.cx, self.cy, self.width, self.height)


def _read_json(path, what):
    if not os.path.isfile(path):
        raise JetgenError("No {} file at {}.".format(what, path))
    if os.path.getsize(path) > MAX_JSON_BYTES:
        raise JetgenError("{} is {} bytes, too large for a {} file (at most {}); give the camera's JSON.".format(
            path, os.path.getsize(path), what, MAX_JSON_BYTES))
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise JetgenError("Cannot read {} as JSON ({}); the {} file must be JSON.".format(path, err, what))


def _number(value, name, path):
    if isinstance(value, bool):
        value = None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise JetgenError("{}: {} must be a number, not {!r}.".format(path, name, value))
    if not np.isfinite(out):
        raise JetgenError("{}: {} must be a finite number, not {!r}.".format(path, name, value))
    return out


def _matrix3(value, path, key):
    """(fx, fy, cx, cy) from a 3x3 camera matrix: nested rows, or 9 values row-major (ROS, OpenCV) or
    column-major (Open3D's PinholeCameraIntrinsic JSON), told apart by where the zeros are."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise JetgenError("{}: {} must be a 3x3 matrix of numbers.".format(path, key))
    if arr.shape == (9,):
        if arr[6] == 0 and arr[7] == 0:
            arr = arr.reshape(3, 3)  # row-major: [fx 0 cx; 0 fy cy; 0 0 1]
        elif arr[2] == 0 and arr[5] == 0:
            arr = arr.reshape(3, 3).T  # column-major: Open3D writes Eigen's storage order
        else:
            raise JetgenError("{}: {} has no zeros where a camera matrix has them ([fx 0 cx; 0 fy cy; 0 0 1]).".format(
                path, key))
    if arr.shape != (3, 3) or not np.isfinite(arr).all():
        raise JetgenError("{}: {} must be a 3x3 camera matrix (3 rows of 3 numbers, or 9 numbers), not shape {}."
                          .format(path, key, arr.shape))
    if arr[1, 0] != 0 or arr[2, 0] != 0 or arr[2, 1] != 0 or arr[2, 2] != 1:
        raise JetgenError("{}: {} is not a pinhole camera matrix [fx s cx; 0 fy cy; 0 0 1].".format(path, key))
    if abs(arr[0, 1]) > 1e-6 * abs(arr[0, 0]):
        raise JetgenError("{}: {} has a skew of {:g}; only cameras without skew are supported.".format(
            path, key, arr[0, 1]))
    return arr[0, 0], arr[1, 1], arr[0, 2], arr[1, 2]


def _first(obj, pairs):
    for a, b in pairs:
        if a in obj and b in obj:
            return (a, b)
    return None


def parse_intrinsics(obj, path="the intrinsics"):
    """Intrinsics from a parsed camera JSON object; see ``read_intrinsics``."""
    if isinstance(obj, list):
        obj = {"K": obj}
    if not isinstance(obj, dict):
        raise JetgenError("{} must hold a JSON object with fx, fy, cx, cy (or a 3x3 camera matrix K).".format(path))
    for key in NESTED_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and not (_first(obj, FOCAL_KEYS) or any(k in obj for k in MATRIX_KEYS)):
            sizes = dict((k, obj[k]) for pair in SIZE_KEYS for k in pair if k in obj)
            sizes.update(inner)
            obj = sizes
            break
    matrix_key = next((k for k in MATRIX_KEYS if k in obj and isinstance(obj[k], list)), None)
    focal, principal = _first(obj, FOCAL_KEYS), _first(obj, PRINCIPAL_KEYS)
    if focal and principal:
        fx, fy = (_number(obj[k], k, path) for k in focal)
        cx, cy = (_number(obj[k], k, path) for k in principal)
    elif matrix_key is not None:
        fx, fy, cx, cy = _matrix3(obj[matrix_key], path, matrix_key)
    else:
        raise JetgenError("{} has no camera intrinsics: give fx, fy, cx, cy (or ppx, ppy), or a 3x3 camera matrix "
                          "under one of {}.".format(path, ", ".join(MATRIX_KEYS)))
    size = _first(obj, SIZE_KEYS)
    width = height = None
    if size:
        width, height = (_number(obj[k], k, path) for k in size)
        if width != int(width) or height != int(height) or width < 1 or height < 1:
            raise JetgenError("{}: the image size must be whole numbers of pixels >= 1, not {:g}x{:g}.".format(
                path, width, height))
    if not (fx > 0 and fy > 0):
        raise JetgenError("{}: the focal lengths must be positive pixels, not fx={:g}, fy={:g}.".format(path, fx, fy))
    return Intrinsics(fx, fy, cx, cy, width, height)


def read_intrinsics(path):
    """Pinhole intrinsics from a camera JSON file, in any of the common layouts:

    - flat: {"fx", "fy", "cx", "cy"[, "width", "height"]} (RealSense's rs2_intrinsics: "ppx", "ppy");
    - a 3x3 camera matrix under "K"/"k" (ROS CameraInfo, 9 values row-major), "camera_matrix" (OpenCV),
      "intrinsic_matrix" (Open3D's PinholeCameraIntrinsic JSON, 9 values column-major), as nested rows
      or 9 numbers, with "width"/"height" beside it;
    - either of those one level down under "intrinsics", "camera" or "depth".
    Returns ``Intrinsics``. JetgenError for a missing or unreadable file, no intrinsics in it, a
    non-positive focal length, skew, or a non-pinhole matrix.
    """
    return parse_intrinsics(_read_json(path, "intrinsics"), path)


def check_intrinsics(cam, shape, path="the intrinsics"):
    """JetgenError when ``cam`` cannot belong to a depth image of ``shape`` (H, W): a different image
    size, or a principal point outside the image."""
    h, w = shape
    if cam.width is not None and (cam.width, cam.height) != (w, h):
        raise JetgenError("{} are for a {}x{} image but the depth image is {}x{}; give the depth stream's intrinsics "
                          "(a colour stream's differ), or scale them to the depth image.".format(
                              path, cam.width, cam.height, w, h))
    if not (0 <= cam.cx <= w and 0 <= cam.cy <= h):
        raise JetgenError("{}: the principal point ({:g}, {:g}) lies outside the {}x{} depth image; these intrinsics "
                          "are not for this image.".format(path, cam.cx, cam.cy, w, h))


def read_depth(path, scale=None):
    """A depth image in metres, float32 (H, W), NaN-free (no reading = 0), from:

    - a 16-bit greyscale PNG (units times ``scale``, default PNG_DEPTH_SCALE = millimetres); an 8-bit
      one only with an explicit ``scale``;
    - a .npy array (H, W): float values are metres times ``scale`` (default 1), integer ones units
      times ``scale`` (default PNG_DEPTH_SCALE); NaN and inf in a float array count as no reading.
    JetgenError for a missing file, another format, a colour PNG, a non-positive scale, or readings
    farther than MAX_DEPTH_M (a wrong scale). Sizes are bounded before decoding (images.py).
    """
    if not os.path.isfile(path):
        raise JetgenError("No depth image at {}.".format(path))
    if scale is not None:
        scale = _number(scale, "the depth scale", path)
        if not scale > 0:
            raise JetgenError("The depth scale must be positive (metres per unit), not {:g}.".format(scale))
    ext = os.path.splitext(path)[1].lower()
    if ext == ".png":
        if os.path.getsize(path) > MAX_INPUT_BYTES:
            raise JetgenError("{} is larger than the {} bytes an input image may have.".format(path, MAX_INPUT_BYTES))
        with open(path, "rb") as handle:
            head = handle.read(33)
        if head[:8] != PNG_SIGNATURE:
            raise JetgenError("{} is not a PNG file.".format(path))
        _, _, bits, colour, _ = png_header(head, path)
        if colour != 0:
            raise JetgenError("{} is a colour PNG; a depth image is one 16-bit grey channel (save the depth "
                              "stream, not the colour one).".format(path))
        if bits != 16 and scale is None:
            raise JetgenError("{} is an {}-bit PNG; depth PNGs are 16-bit. If it really holds depth, give its "
                              "scale (metres per unit) with --depth-scale.".format(path, bits))
        units = np.round(read_image(path) * float(2 ** bits - 1))  # read_image scales by the bit depth: undo it
        depth = units * (PNG_DEPTH_SCALE if scale is None else scale)
    elif ext == ".npy":
        arr = _load_npy_nan(path)
        if arr.ndim != 2:
            raise JetgenError("{} holds an array of shape {}; a depth image is (height, width).".format(
                path, arr.shape))
        if arr.dtype.kind == "f":
            depth = np.where(np.isfinite(arr), arr, 0.0) * (1.0 if scale is None else scale)
        else:
            depth = arr.astype(np.float64) * (PNG_DEPTH_SCALE if scale is None else scale)
    else:
        raise JetgenError("Cannot read {} as a depth image: give a 16-bit PNG or a .npy array.".format(path))
    depth = np.asarray(depth, dtype=np.float32)
    if depth.size and float(depth.max()) > MAX_DEPTH_M:
        raise JetgenError("{} has readings up to {:g} m after scaling; check the depth scale (a 16-bit PNG in "
                          "millimetres takes 0.001).".format(path, float(depth.max())))
    if depth.size and float(depth.min()) < 0:
        raise JetgenError("{} holds negative depths; depth is the distance along the camera's z axis.".format(path))
    return depth


def _load_npy_nan(path):
    """load_npy, but NaN/inf allowed in a float array (depth cameras write NaN for no reading)."""
    try:
        return load_npy(path)
    except JetgenError as err:
        if "NaN or infinite" not in str(err):
            raise
    return np.load(path, allow_pickle=False)  # load_npy has checked the header, size and dtype


def read_mask(path, shape):
    """An object mask (H, W) bool from a PNG (or .npy) of the depth image's ``shape``: nonzero = object.
    JetgenError for a missing file or another size."""
    if not os.path.isfile(path):
        raise JetgenError("No object mask at {}.".format(path))
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        arr = load_npy(path)
    elif ext == ".png" or ext in (".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"):
        arr = read_image(path, grey=True)
    else:
        raise JetgenError("Cannot read {} as an object mask: give a PNG (nonzero = object).".format(path))
    if arr.ndim == 3 and ext == ".npy":
        arr = arr[..., 0]
    if arr.shape != tuple(shape):
        raise JetgenError("The object mask {} is {}x{} but the depth image is {}x{}; give a mask of the depth image's "
                          "size.".format(path, arr.shape[1] if arr.ndim > 1 else "?", arr.shape[0], shape[1],
                                         shape[0]))
    return arr > 0.5 / 255.0


def parse_extrinsics(obj, path="the extrinsics"):
    """A rigid 4x4 transform (float64) from a parsed JSON object; see ``read_extrinsics``."""
    if isinstance(obj, dict):
        key = next((k for k in EXTRINSIC_KEYS if k in obj), None)
        if key is None:
            raise JetgenError("{} has no 4x4 matrix: give it as a list or under one of {}.".format(
                path, ", ".join(EXTRINSIC_KEYS)))
        obj = obj[key]
    try:
        arr = np.asarray(obj, dtype=np.float64)
    except (TypeError, ValueError):
        raise JetgenError("{} must hold a 4x4 matrix of numbers.".format(path))
    if arr.shape == (16,):
        arr = arr.reshape(4, 4)
    if arr.shape == (3, 4):
        arr = np.vstack([arr, [0.0, 0.0, 0.0, 1.0]])
    if arr.shape != (4, 4) or not np.isfinite(arr).all():
        raise JetgenError("{} must hold a 4x4 (or 3x4) matrix, rows first, not shape {}.".format(path, arr.shape))
    if not np.allclose(arr[3], [0, 0, 0, 1]):
        raise JetgenError("{}: the last row of the 4x4 matrix must be 0 0 0 1.".format(path))
    rot = arr[:3, :3]
    if np.abs(rot.dot(rot.T) - np.eye(3)).max() > RIGID_TOL or np.linalg.det(rot) < 0:
        raise JetgenError("{}: the 3x3 rotation part is not a rotation (orthonormal, determinant 1); give a rigid "
                          "camera-to-world transform.".format(path))
    return arr


def read_extrinsics(path):
    """A rigid camera-to-world transform (4x4 float64) from JSON: a 4x4 (or 3x4) matrix, nested rows or
    16 numbers row-major, bare or under "extrinsics", "T", "matrix", "transform", "pose" or
    "camera_to_world". JetgenError for a missing file or a matrix that is not a rotation + translation."""
    return parse_extrinsics(_read_json(path, "extrinsics"), path)


def backproject(depth, cam, mask=None, extrinsics=None):
    """Points (P, 3) float32 in the camera frame (or the world frame with ``extrinsics``, a 4x4
    camera-to-world transform) from a depth image (H, W) in metres: ((u - cx) d / fx, (v - cy) d / fy, d)
    for every pixel with a reading (d > 0, finite) inside ``mask`` (H, W bool; None: all), row-major.
    JetgenError when the intrinsics do not fit the image or no pixel is left."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise JetgenError("A depth image is (height, width), not shape {}.".format(depth.shape))
    check_intrinsics(cam, depth.shape)
    valid = np.isfinite(depth) & (depth > 0)
    readings = int(valid.sum())
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if not valid.any():
        raise JetgenError("The depth image has no readings{}: nothing to complete ({} of {} pixels have depth)."
                          .format(" inside the object mask" if mask is not None and readings else "", readings,
                                  depth.size))
    v, u = np.nonzero(valid)
    d = depth[v, u]
    points = np.stack([(u - cam.cx) * d / cam.fx, (v - cam.cy) * d / cam.fy, d], axis=1)
    if extrinsics is not None:
        t = np.asarray(extrinsics, dtype=np.float64)
        points = points.dot(t[:3, :3].T) + t[:3, 3]
    return points.astype(np.float32)


def depth_points(depth_path, intrinsics_path, depth_scale=None, mask_path=None, extrinsics_path=None):
    """(points (P, 3) float32, info dict) from a depth file and its camera files: the partial cloud of
    one view, in the camera frame (the world frame when ``extrinsics_path`` is given). ``info`` holds
    the intrinsics, the image size, and the pixel counts (with depth, kept). JetgenError as the
    readers above say."""
    cam = read_intrinsics(intrinsics_path)
    depth = read_depth(depth_path, depth_scale)
    check_intrinsics(cam, depth.shape, intrinsics_path)
    mask = read_mask(mask_path, depth.shape) if mask_path is not None else None
    extrinsics = read_extrinsics(extrinsics_path) if extrinsics_path is not None else None
    points = backproject(depth, cam, mask, extrinsics)
    info = {"intrinsics": cam.as_dict(), "image": [int(depth.shape[1]), int(depth.shape[0])],
            "pixels_with_depth": int((depth > 0).sum()), "points": int(len(points)),
            "frame": "world" if extrinsics is not None else "camera"}
    return points, info


# -- writing and simulating depth images -----------------------------------------------------------
NOISE_AT_1M = 0.002  # metres: depth noise sigma of a structured-light or stereo sensor at 1 m (grows with d^2)
DROPOUT = 0.02  # fraction of readings lost at random
EDGE_DROPOUT = 0.5  # fraction of readings lost next to a depth jump (silhouettes)
EDGE_JUMP = 0.05  # metres: a neighbour this much farther (or missing) makes a pixel an edge pixel


def depth_units(depth, scale=PNG_DEPTH_SCALE):
    """A depth image (H, W) in metres as uint16 units of ``scale`` metres (rounded; 0 = no reading).
    JetgenError for readings beyond what 16 bits hold at that scale."""
    depth = np.asarray(depth, dtype=np.float64)
    units = np.round(np.where(np.isfinite(depth) & (depth > 0), depth, 0.0) / float(scale))
    if units.size and units.max() > 65535:
        raise JetgenError("Depths up to {:g} m do not fit a 16-bit PNG at {:g} m per unit; use a larger scale.".format(
            float(depth.max()), scale))
    return units.astype(np.uint16)


def write_depth_png(path, depth, scale=PNG_DEPTH_SCALE):
    """Write a depth image (H, W) in metres as a 16-bit grey PNG of ``scale`` metres per unit (the
    file ``read_depth`` reads back), atomically, with the built-in PNG writer."""

    atomic_write_bytes(path, encode_png(depth_units(depth, scale)))


def simulate_sensor(depth, rng, noise_at_1m=NOISE_AT_1M, dropout=DROPOUT, edge_dropout=EDGE_DROPOUT,
                    scale=PNG_DEPTH_SCALE):
    """What an RGB-D sensor would report for an ideal depth image (H, W) (metres, 0 = nothing):
    Gaussian noise with sigma = ``noise_at_1m`` * d^2, readings lost at random (``dropout``) and
    more often next to a depth jump (``edge_dropout``), then quantised to ``scale`` (16-bit mm).
    ``rng`` a numpy RandomState. Returns float32 metres (0 = no reading)."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = depth > 0
    noisy = depth + rng.standard_normal(depth.shape) * noise_at_1m * depth ** 2
    padded = np.pad(np.where(valid, depth, np.inf), 1, mode="edge")
    h, w = depth.shape
    edge = np.zeros(depth.shape, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy:dy + h, dx:dx + w] - depth > EDGE_JUMP
    lost = rng.uniform(size=depth.shape) < np.where(edge, edge_dropout, dropout)
    keep = valid & ~lost & (noisy > 0)
    return (depth_units(np.where(keep, noisy, 0.0), scale) * scale).astype(np.float32)
