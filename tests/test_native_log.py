"""TensorFlow's native start-up log lines are kept off stderr; everything else is kept."""

import os
import subprocess
import sys

import pytest

from widedeep.cli.native_log import filtered_native_stderr, keep_line

NATIVE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796335145.804695   26941 port.cc:153] oneDNN custom operations are on.\n",
    b"I0000 00:00:1796335145.805101   26941 cudart_stub.cc:31] Could not find cuda drivers\n",
    b"E0000 00:00:1796335150.301075   26941 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n",
    b"W0000 00:00:1796335150.301075   26941 some.cc:1] a warning\n",
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    b"with the appropriate compiler flags.\n",
]
OURS = [
    b"widedeep: error: no such file\n",
    b"Traceback (most recent call last):\n",
    b"I0000 is not a log line without its fields\n",
    b"E: a line that starts with a level letter\n",
]


@pytest.mark.parametrize("line", NATIVE)
def test_native_lines_are_dropped_on_a_machine_without_gpu_driver(line):
    assert not keep_line(line, gpu_driver=False)


@pytest.mark.parametrize("line", OURS)
def test_other_lines_are_kept(line):
    assert keep_line(line, gpu_driver=False)
    assert keep_line(line, gpu_driver=True)


def test_errors_are_kept_where_a_gpu_driver_exists():
    kept = [line for line in NATIVE if keep_line(line, gpu_driver=True)]
    assert kept == [NATIVE[3]]


def _write_to_fd2() -> None:
    for line in NATIVE + OURS:
        os.write(2, line)


def test_filter_replays_only_the_kept_lines(capfd, monkeypatch):
    monkeypatch.delenv("WIDEDEEP_DEBUG", raising=False)
    with filtered_native_stderr():
        _write_to_fd2()
    kept = ([NATIVE[3]] if os.path.exists("/proc/driver/nvidia") else []) + OURS
    assert capfd.readouterr().err == "".join(line.decode() for line in kept)


def test_debug_shows_everything(capfd, monkeypatch):
    monkeypatch.setenv("WIDEDEEP_DEBUG", "1")
    with filtered_native_stderr():
        _write_to_fd2()
    assert capfd.readouterr().err == "".join(line.decode() for line in NATIVE + OURS)


def test_quieting_tensorflow_prints_nothing():
    """`widedeep` (the command) first imports TensorFlow quietly: nothing on stderr on this machine."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WIDEDEEP_DEBUG", "TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")
    }
    code = (
        "import os; from widedeep.cli.native_log import quiet_tensorflow; quiet_tensorflow(); "
        "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), os.environ.get('KERAS_BACKEND'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": os.getcwd()},
        check=True,
    )
    assert done.stdout == "3 tensorflow\n"  # TensorFlow's C++ logging off once it runs
    if os.path.exists("/proc/driver/nvidia"):
        pytest.skip("this machine has an NVIDIA driver: its E lines are kept on purpose")
    assert done.stderr == ""
