"""The command line shell: lazy commands, light start-up, errors as sentences."""
import subprocess
import sys

from click.testing import CliRunner

from jetgen.cli import COMMANDS, main

HEAVY = ("torch", "onnx", "sklearn", "matplotlib", "onnxruntime")


def test_help_lists_every_command_without_importing_heavy_packages():
    code = ("import sys\nfrom jetgen.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print([m for m in {!r} if m in sys.modules])".format(HEAVY))
    out = subprocess.check_output([sys.executable, "-c", code], universal_newlines=True)
    for name in COMMANDS:
        assert name in out
    assert out.strip().endswith("[]"), out


def test_every_command_resolves_and_has_help():
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2 and "No such command" in result.output


def test_version():
    from jetgen import __version__
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
