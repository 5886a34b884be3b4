"""How a number reads in a table cell, for every table jetgen prints (jetgen.cli.output) or writes
(jetgen.bench.report's results files). Standard library only; Python 3.6 compatible."""


def fmt(value, digits=3):
    """A number as a short table cell: '-' when missing, 3 significant digits, separators from 1000."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        if value >= 1000:
            return "{:,.0f}".format(value)
        return "{:.{}g}".format(value, digits)
    return str(value)
