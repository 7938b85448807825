import logging
import subprocess
import sys
import warnings

import pandas as pd
import pytest

from ddd_support import __version__, cli
from ddd_support.cli import build_parser, main
from ddd_support.train import runner

from .conftest import REPO

TINY = ["--set", "n_train=40", "--set", "n_test=20", "--set", "base_width=8", "--set", "epochs=3",
        "--set", "probe_per_class=1", "--quiet"]




def test_profiles_command_lists_every_profile_and_its_values(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in ("smoke:", "cpu:", "paper:", "noise_rate = 0.3", "base_width = 512"):
        assert name in out


def test_unknown_profile_exits_2_with_the_valid_ones(capsys):
    assert main(["train", "--profile", "nope"]) == 2
    assert "valid profiles: smoke, cpu, paper" in capsys.readouterr().err


def test_unknown_key_exits_2_with_the_valid_ones(capsys):
    assert main(["train", "--set", "widht=3"]) == 2
    assert "valid keys" in capsys.readouterr().err


def test_missing_data_is_a_failure_exit_1_naming_both_sources(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DDD_DATA_ROOT", str(tmp_path / "absent"))
    monkeypatch.setenv("DDD_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["train", "--out", str(tmp_path / "runs"), "--set", "data_source=imagefolder", *TINY])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "image-folder" in err


def test_a_bad_argument_is_a_usage_error_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--no-such-flag"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_version_flag_prints_the_package_version():
    result = subprocess.run([sys.executable, "-m", "ddd_support", "--version"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"ddd_support {__version__}"


@pytest.mark.parametrize("command", [["train"], ["profiles"], ["analyze", "RUN"], ["export-reference", "RUN",
                                                                                   "--dest", "out"]])
@pytest.mark.parametrize("flag, quiet, verbose", [("-q", True, None), ("--quiet", True, None), ("-v", False, 1),
                                                  ("-vv", False, 2)])
def test_every_subcommand_takes_quiet_and_verbose_before_or_after_it(command, flag, quiet, verbose):
    for argv in ([flag, *command], [*command, flag]):
        args = build_parser().parse_args(argv)
        assert getattr(args, "quiet", False) == quiet and getattr(args, "verbose", None) == verbose, argv


def test_status_goes_to_stderr_and_results_to_stdout_without_progress_bars_off_a_terminal(image_root, tmp_path,
                                                                                          capsys):
    loud = [a for a in TINY if a != "--quiet"]
    assert main(["train", "--model", "mlp3", "--out", str(tmp_path / "runs"), *loud]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("smoke/mlp3/seed0")
    assert "train: profile smoke, model(s) mlp3, seed(s) 0" in err
    # stderr is not a terminal here: no progress bars unless asked, while the status lines still come
    assert "train: profile smoke" in err
    assert "epoch/s" not in err and "s/epoch" not in err and "%|" not in err


def test_quiet_leaves_stderr_empty(image_root, tmp_path, capsys):
    assert main(["-q", "train", "--model", "mlp3", "--out", str(tmp_path / "runs"), *TINY]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "smoke/mlp3/seed0" in out


def test_python_warnings_are_logged_to_stderr(capsys):
    cli.configure_logging(0)
    try:
        warnings.warn("something odd", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "UserWarning: something odd" in err


def test_ctrl_c_exits_130_with_a_resume_hint_and_no_traceback(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train_profile", interrupted)
    assert main(["train", "--model", "mlp3"]) == 130
    err = capsys.readouterr().err
    assert "error: interrupted; the same command resumes" in err and "Traceback" not in err


def test_listing_profiles_and_a_usage_error_load_neither_torch_nor_the_analysis():
    code = ("import sys\nfrom ddd_support.cli import main\n"
            "assert main(['profiles']) == 0 and main(['train', '--profile', 'nope']) == 2\n"
            "heavy = sorted(m for m in ('torch', 'pandas', 'scipy', 'matplotlib', 'ddd_support.analysis') "
            "if m in sys.modules)\nassert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_ctrl_c_through_the_module_entry_point_exits_130_without_a_traceback():
    code = ("import runpy, ddd_support.train.runner as r\n"
            "def stop(*a, **k): raise KeyboardInterrupt\n"
            "r.train_profile = stop\n"
            "runpy.run_module('ddd_support', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code, "train"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 130
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr


def test_train_command_trains_every_model_of_the_profile(image_root, tmp_path, capsys):
    assert main(["train", "--profile", "smoke", "--out", str(tmp_path / "runs"), *TINY]) == 0
    for model in ("mlp3", "mlp5", "mlp7"):
        run = tmp_path / "runs" / "smoke" / model / "seed0"
        assert len(pd.read_csv(run / "metrics.csv")) == 4
        assert (run / "probe.npz").exists() and (run / "labels.npz").exists()


def test_model_and_seed_flags_select_runs(image_root, tmp_path):
    out = tmp_path / "runs"
    assert main(["train", "--model", "mlp5", "--seed", "1", "--seed", "2", "--out", str(out), *TINY]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/*/*")) == [
        "smoke/mlp5/seed1", "smoke/mlp5/seed2"]


@pytest.mark.slow
def test_module_entry_point_runs_without_the_notebook_stack(image_root, tmp_path):
    code = ("import sys, builtins; real = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    if name.split('.')[0] in ('IPython', 'jupyter_book', 'papermill', 'nbformat'):\n"
            "        raise ImportError('notebook stack used: ' + name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            "from ddd_support.cli import main; sys.exit(main(sys.argv[1:]))")
    args = ["train", "--model", "mlp3", "--out", str(tmp_path / "runs"), *TINY]
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "smoke/mlp3/seed0" in result.stdout


def test_batched_seeds_flag_gives_the_same_metrics_as_separate_runs(image_root, tmp_path):
    args = ["train", "--model", "mlp3", "--seed", "0", "--seed", "1", *TINY]
    assert main([*args, "--out", str(tmp_path / "sep")]) == 0
    assert main([*args, "--out", str(tmp_path / "bat"), "--batched-seeds"]) == 0
    for seed in (0, 1):
        a = pd.read_csv(tmp_path / "sep" / "smoke" / "mlp3" / f"seed{seed}" / "metrics.csv")
        b = pd.read_csv(tmp_path / "bat" / "smoke" / "mlp3" / f"seed{seed}" / "metrics.csv")
        cols = [c for c in a.columns if not c.endswith("_seconds")]
        pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)


# --------------------------------------------------------------------------- bad input: one line, documented exit code
BAD_INPUT = [
    (["train", "--seed", "99999999999999999999"], 2, "seed must be at most 4294967295"),
    (["train", "--seed", "100000000000000"], 2, "seed must be at most 4294967295"),
    (["train", "--set", "weight_decay=-1"], 2, "weight_decay must be a finite number >= 0"),
    (["train", "--set", "weight_decay=nan"], 2, "weight_decay must be a finite number >= 0, got nan"),
    (["train", "--set", "lr=inf"], 2, "lr must be a positive finite number"),
    (["train", "--set", "base_width=100000000"], 2, "weights, more than the"),
    (["train", "--set", "noise_rate=1"], 2, "noise_rate must be in [0, 1)"),
    (["export-reference", "RUN", "--dest", "REF", "--max-snapshots", "-1"], 2, "--max-snapshots must be at least 2"),
    (["export-reference", "RUN", "--dest", "REF", "--max-snapshots", "0"], 2, "--max-snapshots must be at least 2"),
    (["export-reference", "RUN", "--dest", "REF", "--top-k", "0"], 2, "--top-k must be at least 1"),
    (["export-reference", "RUN", "--dest", "REF", "--top-k", "-3"], 2, "--top-k must be at least 1"),
    (["export-reference", "RUN", "--dest", "REF"], 1, "is not a directory"),
    (["analyze", "RUN"], 1, "is not a directory"),
    (["sweep", "SPEC"], 2, "is not valid YAML at line 3, column 1: expected"),
]


@pytest.mark.parametrize("argv, code, message", BAD_INPUT, ids=["_".join(argv) for argv, _, _ in BAD_INPUT])
def test_bad_input_is_one_error_line_with_the_documented_exit_code(argv, code, message, tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv("DDD_DATA_ROOT", str(tmp_path / "no-data"))
    (tmp_path / "spec.yaml").write_text("name: bad\ngrid: [noise_rate: 0.1\n")
    names = {"RUN": str(tmp_path / "runs" / "absent"), "REF": str(tmp_path / "ref"), "SPEC": str(tmp_path / "spec.yaml")}
    argv = [names.get(a, a) for a in argv]
    assert main(["-q", *argv, "--out", str(tmp_path / "runs")] if argv[0] == "train" else ["-q", *argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "ref").exists(), "nothing written"


def test_running_out_of_memory_is_one_error_line(monkeypatch, capsys):
    def allocate(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:116] . DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 1228800000000 bytes.\nmore detail")

    monkeypatch.setattr(cli, "_train", allocate)
    assert main(["-q", "train"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory") and "lower base_width" in err and len(err.strip().splitlines()) == 1


def test_a_closed_pipe_ends_the_listing_quietly():
    result = subprocess.run(f"{sys.executable} -m ddd_support profiles | head -1", shell=True, cwd=REPO,
                            capture_output=True, text=True)
    assert result.stdout.startswith("smoke:") and result.stderr == ""

