"""How commands print: aligned tables, byte sizes, JSON. Every command that prints a table or a
size goes through here, so a new output format is a change to this module alone."""
import json

import click

from jetgen.cells import fmt as cell  # one number format for tables and results files


def human_size(nbytes):
    """'812 B', '3.4 kB', '1.2 MB'; '-' for None."""
    if nbytes is None:
        return "-"
    value = float(nbytes)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return "{:.0f} {}".format(value, unit) if unit == "B" else "{:.1f} {}".format(value, unit)
        value /= 1024.0


def table(header, rows, rule=True):
    """Rows (sequences of cells) under ``header`` as aligned text; the last column is not padded."""
    lines = [[str(c) for c in header]] + [[cell(c) for c in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    if rule:
        text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def key_values(pairs):
    """'key   value' lines, keys padded to one width."""
    pairs = [(str(k), v) for k, v in pairs]
    width = max([len(k) for k, _ in pairs] or [0])
    return "\n".join("{}  {}".format(k.ljust(width), v) for k, v in pairs)


def emit_json(obj):
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def printable(text):
    """``text`` with every control or format character (escape sequences, NUL, bidi overrides) shown as
    an escape such as ``\\x1b``, so a bundle's own strings cannot drive the terminal; newlines and tabs stay."""
    import unicodedata

    def show(ch):
        if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return ch
        code = ord(ch)
        return "\\x{:02x}".format(code) if code < 0x100 else "\\u{:04x}".format(code) if code < 0x10000 else \
            "\\U{:08x}".format(code)
    return "".join(show(ch) for ch in text)
