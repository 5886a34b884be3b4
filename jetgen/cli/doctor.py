"""``jetgen doctor``: what this machine is, what jetgen can do here, and what to install for the rest.

Text for people, ``--json`` for scripts; exit 0 whatever it finds (it is a report). Torch is imported
only when installed, so it runs on a bare Jetson. Python 3.6 compatible.
"""
import click

from jetgen.cli.output import emit_json, key_values, table


def jetson_line(j):
    if not j["jetson"]:
        return "no (no /etc/nv_tegra_release, no nvidia-l4t-core package, no Jetson device tree)"
    board = "{} ({}, target {})".format(j["board"], j["compatible"], j["target"]) if j["board"] else "unknown board"
    if not j["l4t"]:
        return "{}; L4T release not found".format(board)
    release = j["release"]
    if release is None:
        from jetgen.doctor import release_advice
        return "{}; L4T {} (from {}), not a release jetgen supports: {}".format(
            board, j["l4t"], j["l4t_source"], release_advice(j["l4t"]))
    listed = "" if release.get("exact", True) else " (not in jetson/releases.tsv: taken as its nearest listed " \
        "release R{})".format(release["l4t"])
    return "{}; L4T {}{} = JetPack {} (Python {}, CUDA {}, TensorRT {})".format(
        board, j["l4t"], listed, release["jetpack"], release["python"], release["cuda"], release["tensorrt"])


def format_report(r):
    m, gpu = r["machine"], r["gpu"]
    machine = key_values([
        ("os", "{} ({})".format(m["os"], m["machine"])),
        ("cpu", "{} ({} cores)".format(m["cpu"], m["cores"])),
        ("python", "{} ({})".format(m["python"], m["executable"])),
        ("jetson", jetson_line(r["jetson"])),
        ("gpu", "{} (from {})".format(gpu["name"], gpu["source"]) if gpu["name"] else "none found"),
    ])
    rows = []
    for name, p in r["packages"].items():
        if p["installed"]:
            state = p["version"] or "installed"
        else:
            state = "- ({})".format(p["problem"]) if p["problem"] else "-"
        rows.append((p["dist"], state, p["used_for"]))
    can = [(c["what"], "yes" if c["ready"] else "no", c["detail"]) for c in r["can"]]
    return "\n".join(["This machine", machine, "", "Packages", table(("package", "version", "used for"), rows),
                      "", "What jetgen can do here", table(("task", "ready", "how / what to install"), can)])


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--root", type=click.Path(file_okay=False), default="/", hidden=True,
              help="Read etc/ and proc/ under this directory instead of / (for tests, like setup.sh --root).")
def doctor(as_json, root):
    """Show what this machine is, what jetgen can do on it, and what to install for the rest."""
    from jetgen.doctor import check

    report = check(root)
    if as_json:
        emit_json(report)
    else:
        click.echo(format_report(report))
