"""A new user's first day: install hints, output paths, compact tables and readable errors (issue 23).

Every test drives the CLI (in a subprocess where imports must be blocked) on the shared fixtures.
"""
import os
import json
import re
import subprocess
import sys
import textwrap

from click.testing import CliRunner

from tests.runtime_fixtures import make_bundle
from jetgen.cli import COMMAND_EXTRAS, MODULE_EXTRA, TORCH_CPU_INSTALL, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a Python whose import system behaves as if only the core package and the `ort` extra were installed:
# the desktop-only packages fail with the ModuleNotFoundError a missing package raises
ORT_ONLY = textwrap.dedent("""
    import sys
    DESKTOP = {desktop!r}

    class Missing(object):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in DESKTOP:
                raise ModuleNotFoundError("No module named " + repr(name), name=name)
            return None

    sys.meta_path.insert(0, Missing())
    from jetgen.cli import main
    sys.argv = ["jetgen"] + {argv!r}
    main()
""")
DESKTOP = tuple(sorted(m for m, extra in MODULE_EXTRA.items() if extra != "ort"))


def run_ort_only(argv, cwd):
    code = ORT_ONLY.format(desktop=DESKTOP, argv=list(argv))
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", code], cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120, env=env)


def test_desktop_commands_name_their_extra_in_one_sentence_without_a_traceback(run_factory, tmp_path):
    run = run_factory("vae")
    for argv, extras in ((["eval", str(run), "--out", str(tmp_path / "ev")], "train"),
                         (["export", str(run), "--target", "nano", "--out", str(tmp_path / "b.jetgen")], "export,train"),
                         (["train", "vae", "--data", "digits", "--out", str(tmp_path / "r")], "train")):
        proc = run_ort_only(argv, tmp_path)
        assert proc.returncode == 1, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: `jetgen {}` needs the ".format(argv[0])), proc.stderr
        assert "pip install 'jetgen[{}]'".format(extras) in last, last
        assert TORCH_CPU_INSTALL in last and "pytorch.org" in last, last


def test_every_command_with_extras_is_a_command_and_every_extra_exists():
    with open(os.path.join(ROOT, "setup.cfg")) as handle:
        declared = set(re.findall(r"^(\w+) =$", handle.read().split("[options.extras_require]")[1], flags=re.M))
    help_text = CliRunner().invoke(main, ["--help"]).output
    for command, extras in COMMAND_EXTRAS.items():
        assert re.search(r"^\s+{}\s".format(command), help_text, flags=re.M), command
        assert set(extras) <= declared, (command, extras)
    assert set(MODULE_EXTRA.values()) <= declared


def test_readme_pins_cpu_torch_as_the_makefile_does_and_names_the_cuda_route():
    with open(os.path.join(ROOT, "Makefile")) as handle:
        pin = re.search(r"^TORCH_PIN := (\S+)", handle.read(), flags=re.M).group(1)
    assert pin in TORCH_CPU_INSTALL
    with open(os.path.join(ROOT, "README.md")) as handle:
        readme = handle.read()
    install = readme.split("## Install on a desktop")[1].split("\n## ")[0]
    lines = [line.strip() for line in install.splitlines() if line.strip().startswith("pip install")]
    assert lines, install
    for line in lines:  # every pip line that can pull torch pins it
        if "torch" in line or "train" in line:
            assert pin in line, line
    assert TORCH_CPU_INSTALL in install
    assert "download.pytorch.org/whl/cu" in install and "driver" in install


def test_check_puts_the_verdict_first_and_folds_findings_that_need_no_action(tmp_path):
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"), kind="cvae", n_labels=3)
    runner = CliRunner()
    plain = runner.invoke(main, ["check", bundle, "--target", "nano"])
    assert plain.exit_code == 0, plain.output
    first = plain.output.splitlines()[0]
    assert first.startswith("Deployable on nano") and "that need no action" in first, first
    assert "INT64 tensors (e.g." not in plain.output and "runtime versions" not in plain.output
    folded = int(re.search(r"(\d+) findings need no action", plain.output).group(1))
    verbose = runner.invoke(main, ["check", bundle, "--target", "nano", "--verbose"])
    assert verbose.exit_code == 0 and verbose.output.splitlines()[0] == first
    assert "Need no action ({}):".format(folded) in verbose.output
    assert "INT64 tensors (e.g." in verbose.output and "runtime versions" in verbose.output
    as_json = runner.invoke(main, ["check", bundle, "--target", "nano", "--json"])
    assert len(json.loads(as_json.output)["findings"]) == folded + len(re.findall(r"^warning ", plain.output, re.M))


def _bench_row(backend, batch, p50, unstable=False, status="ok", vs_torch=None):
    return {"task": "decode", "backend": backend, "precision": "fp32", "batch": batch, "p50_ms": p50,
            "throughput": batch / p50 * 1e3, "vs_torch": vs_torch, "unstable": unstable, "cv": 0.6 if unstable else 0.05,
            "status": status}


def test_bench_compact_table_marks_unstable_ratios_and_keeps_skip_reasons_below():
    from jetgen.bench import report
    from jetgen.cli.bench import format_table

    why = "TensorRT is not installed here (the tensorrt Python package is missing); on a Jetson it comes with JetPack"
    result = {"rows": [_bench_row("torch", 1, 0.5, unstable=True), _bench_row("ort", 1, 0.1, vs_torch=5.0),
                       _bench_row("torch", 64, 2.0), _bench_row("ort", 64, 1.0, vs_torch=2.0),
                       {"task": "-", "backend": "trt", "precision": "fp16", "batch": None, "status": "skipped: " + why}],
              "notes": ["unstable timing for decode torch fp32 batch 1: spread 60% of the mean", "other note"]}
    text = format_table(result)
    lines = text.splitlines()
    assert lines[0].split() == "task backend prec batch median ms items/s vs torch status".split()
    assert max(len(line) for line in lines[:7]) < 100, text
    assert "~5.00x" in text and " 2.00x" in text and "~2.00x" not in text  # the ratio on torch's noisy row is marked
    assert "skipped [1]" in text and "[1] trt fp16: " + why in text
    assert "1 row had unstable timing" in text
    assert report.folded_notes(result["notes"]) == ["other note"]
    full = format_table(result, verbose=True)
    assert "p99 ms" in full and "vs session" in full and "skipped: " + why in full


def test_demo_report_has_one_bench_row_per_task_and_batch_not_one_per_backend_name():
    from jetgen.demo import bench_table_lines

    rows = [{"task": "decode", "backend": b, "precision": "fp32", "batch": 1, "p50_ms": ms, "throughput": 1e3 / ms,
             "vs_torch": vs} for b, ms, vs in (("torch", 0.4, None), ("onnxruntime", 0.05, 8.0), ("ort", 0.06, 6.667))]
    rows.append({"task": "sample", "backend": "ort", "precision": "fp32", "batch": 1024, "p50_ms": 2.0,
                 "throughput": 512000.0, "vs_torch": None})
    lines = bench_table_lines(rows)
    body = lines[2:]
    assert len(body) == 2 and body[0].startswith("| decode | 1 | 0.400 | 0.060 | 0.050 | 16667 | 6.67x |"), lines
    assert not any("| onnxruntime |" in line or "| ort |" in line for line in lines)


def test_eval_states_both_thresholds_and_names_units_active_by_variance_that_carry_little_kl(run_factory, tmp_path):
    from jetgen.cli.evaluate import format_table, kl_rows

    run = run_factory("vae")
    result = CliRunner().invoke(main, ["eval", run, "--no-pictures", "-k", "2", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "active units (Cov_x E_q[z_u|x] > 0.01)" in result.output
    assert re.search(r"units carrying KL > 0.01 nats\s+\d+ of 10", result.output), result.output
    numbers = json.loads(CliRunner().invoke(main, ["eval", run, "--no-pictures", "-k", "2", "--quiet", "--json",
                                                   "--out", str(tmp_path)]).output)
    assert numbers["kl_active_units"] == sum(v > 0.01 for v in numbers["kl_per_dim"])
    # the case: every unit active by variance, two carrying KL 0.009 and 0.008
    case = dict(numbers, kl_per_dim=[0.5] * 8 + [0.009, 0.008], latent_variance=[0.5] * 10, active_units=10)
    rows = dict(kl_rows(case))
    assert rows["units carrying KL > 0.01 nats"] == "8 of 10"
    assert rows["  active by Cov but KL <= 0.01"] == "dim 8, dim 9 (near collapse: KL 0.009, KL 0.008)"
    assert "0.009 0.008" in format_table(dict(case, run=run, eval_file="x", pictures=[]))


def test_eval_of_a_missing_run_prints_its_error_on_its_own_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jetgen.cli", "eval", str(tmp_path / "nope")], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("eval: ") and lines[0].endswith(" failed"), proc.stderr
    assert lines[1].startswith("Error: Run directory ") and "Traceback" not in proc.stderr


def test_an_output_file_in_a_missing_directory_is_refused_before_any_work_and_nothing_is_created(tmp_path):
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"), kind="cvae", n_labels=3)
    missing = tmp_path / "nonexistent" / "dir"
    runner = CliRunner()
    for argv in (["sample", bundle, "--out", str(missing / "x.png")],
                 ["interpolate", bundle, "--from", "seed:1", "--to", "seed:2", "--out", str(missing / "s.png")],
                 ["bench", bundle, "--md", str(missing / "b.md"), "--tasks", "decode"],
                 ["selftest", "--report", str(missing / "r.md")]):
        result = runner.invoke(main, argv)
        assert result.exit_code == 1, (argv, result.output)
        assert "Error: Cannot write {}: the directory {} does not exist".format(argv[argv.index(
            next(a for a in argv if a.startswith(str(missing))))], missing) in result.output, result.output
        assert not (tmp_path / "nonexistent").exists(), argv
    ok = runner.invoke(main, ["sample", bundle, "-n", "2", "--out", str(tmp_path / "x.png")])
    assert ok.exit_code == 0 and (tmp_path / "x.png").is_file(), ok.output


def test_only_a_missing_module_becomes_an_install_hint():
    from jetgen.cli import _missing_module, missing_extra_message

    assert _missing_module(ModuleNotFoundError("No module named 'torch'", name="torch")) == "torch"
    assert _missing_module(ImportError("cannot import name 'x' from 'torch'", name="torch")) is None
    assert missing_extra_message("eval", "jetgen.nothing") is None  # a bug, not an install: the traceback stays
    assert missing_extra_message("sample", "onnxruntime").startswith("`jetgen sample` needs the ort extra")


def test_demo_counts_check_findings_as_check_does(tmp_path):
    from jetgen.demo import _needing_action

    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"), kind="cvae", n_labels=3)
    result = CliRunner().invoke(main, ["check", bundle, "--target", "nano", "--json"])
    report = json.loads(result.output)
    text = CliRunner().invoke(main, ["check", bundle, "--target", "nano"]).output
    assert _needing_action(bundle, report) == len(re.findall(r"^(warning|error) ", text, flags=re.M)) == 1
