"""What the ``umadapt`` command does with its arguments (:mod:`umadapt.cli_args`): ``--run`` expansion, the
config-order check, one-line parse errors, checkpoint overrides that are named, and Lightning's noise kept quiet."""

from __future__ import annotations

import json

import pytest

from tests.helpers import BASE, EXPERIMENTS, SMALL_DATA, SOURCE_ONLY, config_args, run_cli


def test_unknown_config_key_is_named(tmp_path):
    result = run_cli("fit", *config_args(BASE, SOURCE_ONLY), "--model.init_args.learning_rat=0.1", cwd=tmp_path)
    assert result.returncode != 0 and "learning_rat" in result.stderr


def test_run_folder_is_evaluated_in_place(trained_run, tmp_path):
    kept = {name: (trained_run / name).read_bytes() for name in ("metrics.csv", "config.yaml", "run_record.json")}
    result = run_cli("test", "--run", str(trained_run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((trained_run / "results.json").read_text())
    assert record["global_step"] == 2 and "test/target/depth/rmse" in record["metrics"]
    assert {name: (trained_run / name).read_bytes() for name in kept} == kept
    assert sorted(p.name for p in trained_run.parent.iterdir()) == ["run"]  # no new logger version
    assert not any(tmp_path.iterdir()), "evaluating a run folder wrote into the current directory"
    # umadapt's own table, not Lightning's two-dataloader one
    assert "umadapt test results" in result.stdout and "Test metric" not in result.stdout
    assert "target   depth" in result.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trainer.max_epochs=-3"], "train nothing"),
        (["--trainer.max_epochs=0"], "train nothing"),
        (["--trainer.max_epoch=3"], "unrecognized arguments: --trainer.max_epoch=3"),  # no prefix matching
        (["--model.init_args.learning_rat=0.1"], "Option 'learning_rat' is not accepted"),
        (["--data.init_args.batch_size=abc"], "data.init_args.batch_size: expected int, got 'abc'"),
    ],
)
def test_configuration_mistakes_are_one_line_errors(tmp_path, extra, message):
    result = run_cli("fit", *config_args(BASE, SOURCE_ONLY), *SMALL_DATA, *extra, cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("umadapt: error:")]
    assert result.returncode == 2 and len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "usage:" not in result.stderr and "Traceback" not in result.stderr


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n   lr: [1\n  x: 2\n")
    result = run_cli("fit", *config_args(BASE, SOURCE_ONLY, bad), cwd=tmp_path)
    assert result.returncode == 2 and f"--config {bad}: malformed YAML at line 4" in result.stderr


def test_method_config_before_base_is_refused(tmp_path):
    dann = EXPERIMENTS / "synthrooms" / "dann.yaml"
    result = run_cli("fit", *config_args(dann, BASE), *SMALL_DATA, cwd=tmp_path)
    assert result.returncode == 2 and "replaces model DANN" in result.stderr and "grl_max" in result.stderr


def test_overrides_the_checkpoint_replaces_are_named(trained_run, tmp_path):
    result = run_cli(
        "test",
        *config_args(BASE, SOURCE_ONLY),
        *SMALL_DATA,
        f"--ckpt_path={trained_run}/checkpoints/last.ckpt",
        "--model.init_args.encoder.init_args.width=32",
        "--results.path=r.json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replace the configured model.init_args.encoder.init_args.width (config 32, checkpoint 16)" in result.stderr


def test_commands_print_no_lightning_noise_and_name_umadapt(tmp_path):
    result = run_cli("fit", *config_args(BASE, SOURCE_ONLY), *SMALL_DATA, "--trainer.fast_dev_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for noise in ("args parameter is intended", "litlogger", "LeafSpec"):
        assert noise not in result.stdout + result.stderr, noise
    helped = run_cli("--help", cwd=tmp_path)
    assert helped.stdout.startswith("usage: umadapt") and "Lightning Trainer command line tool" not in helped.stdout
    methods = run_cli("fit", "--model.help", "DANN", cwd=tmp_path)
    assert methods.returncode == 0 and "--model.grl_max" in methods.stdout


@pytest.mark.parametrize("where", ["command line", "command line, space-separated", "config file"])
def test_batch_limits_written_as_integers_count_batches(tmp_path, where):
    """jsonargparse turns ``limit_train_batches: 1`` into 1.0, which Lightning reads as every batch."""
    from umadapt.cli import build_cli

    limit = tmp_path / "limit.yaml"
    limit.write_text("trainer:\n  limit_train_batches: 1\n")
    extra = {
        "command line": ["--trainer.limit_train_batches=1"],
        "command line, space-separated": ["--trainer.limit_train_batches", "1"],
        "config file": ["--config", str(limit)],
    }[where]
    cli = build_cli([*config_args(BASE, SOURCE_ONLY), *extra, "--trainer.limit_val_batches=2"], run=False)
    assert cli.trainer.limit_train_batches == 1 and isinstance(cli.trainer.limit_train_batches, int)
    assert cli.trainer.limit_val_batches == 2
    fraction = build_cli([*config_args(BASE, SOURCE_ONLY), "--trainer.limit_train_batches=1.0"], run=False)
    assert fraction.trainer.limit_train_batches == 1.0 and isinstance(fraction.trainer.limit_train_batches, float)


def test_run_refuses_a_second_checkpoint(trained_run, tmp_path):
    result = run_cli("test", "--run", str(trained_run), "--ckpt_path=other.ckpt", cwd=tmp_path)
    assert result.returncode == 2 and "drop --ckpt_path, or drop --run" in result.stderr
