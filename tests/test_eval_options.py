"""`jetgen eval` shows progress and keeps numbers made with other options apart (issue 9, item 4)."""
import json
import os

from click.testing import CliRunner

from jetgen.cli import main
from jetgen.train.evaluate import eval_file_name
from tests.test_eval import hand_run


def test_file_name_says_which_options_differ_from_the_defaults():
    assert eval_file_name({"iw_samples": 100, "seed": 0}) == "eval.json"
    assert eval_file_name({"iw_samples": 10, "seed": 0}) == "eval-k10.json"
    assert eval_file_name({"iw_samples": 10, "seed": 3, "inference_steps": 100, "inference_lr": 0.05}) == \
        "eval-k10-seed3.json"
    assert eval_file_name({"iw_samples": 100, "seed": 0, "inference_steps": 20, "inference_lr": 0.01}) == \
        "eval-steps20-lr0.01.json"


def test_progress_on_stderr_and_other_options_never_replace_eval_json(tmp_path):
    run = hand_run(tmp_path / "run", "vae", metrics_rows=False, latent_stats=False)
    first = CliRunner().invoke(main, ["eval", run, "--no-pictures", "--json"])
    assert first.exit_code == 0, first.output
    for phase in ("eval: loading the run and its data ...", "eval: IWAE NLL, k=100 ...", "eval: negative ELBO"):
        assert phase in first.stderr
    assert first.stderr.count(" s\n") >= 5  # each phase ends with its time
    numbers = json.loads(first.stdout)  # stdout stays pure JSON
    assert numbers["options"] == {"iw_samples": 100, "seed": 0}
    assert numbers["eval_file"] == os.path.join(os.path.abspath(run), "eval.json")
    with open(os.path.join(run, "eval.json")) as handle:
        kept = handle.read()

    quick = CliRunner().invoke(main, ["eval", run, "--no-pictures", "-k", "5", "--quiet"])
    assert quick.exit_code == 0 and quick.stderr == ""
    assert "IWAE NLL, k=5" in quick.stdout and "eval-k5.json" in quick.stdout
    with open(os.path.join(run, "eval-k5.json")) as handle:
        assert json.load(handle)["options"] == {"iw_samples": 5, "seed": 0}
    with open(os.path.join(run, "eval.json")) as handle:
        assert handle.read() == kept  # the 100-sample numbers are still there

    # export copies eval.json, options included, so the bundle records which numbers it carries
    bundle = str(tmp_path / "b.jetgen")
    result = CliRunner().invoke(main, ["export", run, "--target", "desktop", "--out", bundle, "--json"])
    assert result.exit_code == 0, result.output
    with open(os.path.join(bundle, "manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["provenance"]["metrics"]["eval"]["options"] == {"iw_samples": 100, "seed": 0}
