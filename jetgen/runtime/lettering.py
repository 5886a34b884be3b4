"""Row titles on PNG grids, with a tiny 5x9 bitmap font (5x7 letters, descenders below) drawn in numpy.

One built-in font instead of pillow's default, whose look and size change between pillow releases
and which a Jetson may not have: the same sheet everywhere, and testable pixel for pixel. Letters
are drawn lower case, with descenders below the baseline ("sample", not "samPle"). numpy only;
Python 3.6 compatible.
"""
import numpy as np

from jetgen.modalities.image.codec import grid

# 5 columns of 7 rows (capital height; lower case 5 rows high) and, for g j p q y and ',', 2 more rows below
# the baseline: a glyph of 7 rows gets 2 blank ones
_FONT = {
    "a": ".....|.....|.###.|....#|.####|#...#|.####", "b": "#....|#....|####.|#...#|#...#|#...#|####.",
    "c": ".....|.....|.####|#....|#....|#....|.####", "d": "....#|....#|.####|#...#|#...#|#...#|.####",
    "e": ".....|.....|.###.|#...#|#####|#....|.###.", "f": "..##.|.#...|####.|.#...|.#...|.#...|.#...",
    "g": ".....|.....|.####|#...#|#...#|#...#|.####|....#|.###.", "h": "#....|#....|####.|#...#|#...#|#...#|#...#",
    "i": "..#..|.....|.##..|..#..|..#..|..#..|.###.", "j": "...#.|.....|..##.|...#.|...#.|...#.|...#.|#..#.|.##..",
    "k": "#....|#....|#..#.|#.#..|##...|#.#..|#..#.", "l": ".##..|..#..|..#..|..#..|..#..|..#..|.###.",
    "m": ".....|.....|##.#.|#.#.#|#.#.#|#.#.#|#.#.#", "n": ".....|.....|####.|#...#|#...#|#...#|#...#",
    "o": ".....|.....|.###.|#...#|#...#|#...#|.###.", "p": ".....|.....|####.|#...#|#...#|#...#|####.|#....|#....",
    "q": ".....|.....|.####|#...#|#...#|#...#|.####|....#|....#", "r": ".....|.....|#.##.|##..#|#....|#....|#....",
    "s": ".....|.....|.####|#....|.###.|....#|####.", "t": ".#...|.#...|####.|.#...|.#...|.#..#|..##.",
    "u": ".....|.....|#...#|#...#|#...#|#..##|.##.#", "v": ".....|.....|#...#|#...#|#...#|.#.#.|..#..",
    "w": ".....|.....|#...#|#...#|#.#.#|#.#.#|.#.#.", "x": ".....|.....|#...#|.#.#.|..#..|.#.#.|#...#",
    "y": ".....|.....|#...#|#...#|#...#|#...#|.####|....#|.###.", "z": ".....|.....|#####|...#.|..#..|.#...|#####",
    "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.", "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.",
    "2": ".###.|#...#|....#|...#.|..#..|.#...|#####", "3": "#####|...#.|..#..|...#.|....#|#...#|.###.",
    "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.", "5": "#####|#....|####.|....#|....#|#...#|.###.",
    "6": "..##.|.#...|#....|####.|#...#|#...#|.###.", "7": "#####|....#|...#.|..#..|.#...|.#...|.#...",
    "8": ".###.|#...#|#...#|.###.|#...#|#...#|.###.", "9": ".###.|#...#|#...#|.####|....#|...#.|.##..",
    " ": ".....|.....|.....|.....|.....|.....|.....", "-": ".....|.....|.....|.###.|.....|.....|.....",
    ".": ".....|.....|.....|.....|.....|.##..|.##..", ",": ".....|.....|.....|.....|.....|.##..|.##..|..#..|.#...",
    ":": ".....|.##..|.##..|.....|.##..|.##..|.....", "/": ".....|....#|...#.|..#..|.#...|#....|.....",
    "(": "...#.|..#..|.#...|.#...|.#...|..#..|...#.", ")": ".#...|..#..|...#.|...#.|...#.|..#..|.#...",
    "_": ".....|.....|.....|.....|.....|.....|#####", "=": ".....|.....|#####|.....|#####|.....|.....",
    "+": ".....|..#..|..#..|#####|..#..|..#..|.....", "?": ".###.|#...#|....#|...#.|..#..|.....|..#..",
}
GLYPH_H, GLYPH_W = 9, 5
_GLYPHS = dict((ch, np.array([[c == "#" for c in row] for row in (rows + "|.....|.....")
                                                 .split("|")[:GLYPH_H]], dtype=bool))
               for ch, rows in _FONT.items())
TILE_PIXELS = 96  # grids with titles enlarge images to at least this many pixels a side


def text_pixels(text, scale=2):
    """A bool image (9 * scale, (6 * len - 1) * scale) of ``text`` (ink True); '?' for letters it lacks."""
    glyphs = [_GLYPHS.get(ch, _GLYPHS["?"]) for ch in str(text).lower()] or [_GLYPHS[" "]]
    gap = np.zeros((GLYPH_H, 1), dtype=bool)
    row = np.concatenate(sum(([g, gap] for g in glyphs), [])[:-1], axis=1)
    return row.repeat(scale, axis=0).repeat(scale, axis=1)


def titled_grid(x, columns, titles, scale=None, pad=2):
    """uint8 picture of images (n, C, H, W) in [0, 1] in rows of ``columns``, with ``titles[r]`` written
    left of row r in white on black. Images are enlarged to at least TILE_PIXELS a side unless ``scale``
    is given. Raises JetgenError (from ``grid``) for images that are not 1- or 3-channel."""
    x = np.asarray(x, dtype=np.float32)
    h, w = x.shape[2:]
    if scale is None:
        scale = max(1, -(-TILE_PIXELS // max(h, w)))
    pixels = grid(x, columns, pad=pad, scale=scale)
    if len(x) == 1:  # grid draws a lone image as itself: enlarge it here
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
        pad = 0
    text_scale = int(np.clip(h * scale // 40, 1, 4))
    labels = [text_pixels(t, text_scale) for t in titles]
    margin = 3 * text_scale
    width = max(p.shape[1] for p in labels) + 2 * margin
    out = np.zeros((pixels.shape[0], width) + pixels.shape[2:], dtype=np.uint8)
    for r, ink in enumerate(labels):
        top = scale * (pad + r * (h + pad)) + (scale * h - ink.shape[0]) // 2
        if 0 <= top and top + ink.shape[0] <= out.shape[0]:
            out[top:top + ink.shape[0], margin:margin + ink.shape[1]][ink] = 255
    return np.concatenate([out, pixels], axis=1)
