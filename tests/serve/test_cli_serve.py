"""`mka serve` on the command line: bad flags are one sentence, a token is printed, a stop is clean."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import assert_clean_error, run_cli


def test_help_lists_the_flags():
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for flag in ("--model", "--host", "--port", "--token", "--workdir", "--max-upload-mb"):
        assert flag in result.stdout


def test_bad_flags_are_one_sentence(tiny_model_dir):
    assert_clean_error(run_cli("serve", "--model", tiny_model_dir, "--port", "70000"), "--port must be between 0 and 65535")
    assert_clean_error(run_cli("serve", "--model", tiny_model_dir, "--max-upload-mb", "0"), "--max-upload-mb must be positive")
    assert_clean_error(run_cli("serve", "--model", tiny_model_dir, "--queue", "0"), "--queue must be at least 1")


def test_a_missing_model_is_one_sentence(tmp_path):
    assert_clean_error(run_cli("serve", "--model", tmp_path / "nowhere", "--port", "0"))


def test_a_port_in_use_is_one_sentence(tiny_model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--model", tiny_model_dir, "--port", str(port), "--device", "cpu")
    assert_clean_error(result, f"Cannot listen on 127.0.0.1:{port}", "another --port")


def test_prints_its_address_with_the_token_and_stops_cleanly(tiny_model_dir):
    process = subprocess.Popen(
        [sys.executable, "-m", "mka_core.cli.main", "serve", "--model", str(tiny_model_dir), "--port", "0",
         "--device", "cpu", "--token", "letmein"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not any("open http" in line for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        process.terminate()
    assert process.wait(30) == 0, process.stderr.read()
    text = "".join(lines)
    assert re.search(r"open http://127\.0\.0\.1:\d+/\?token=letmein", text), text
    folder = re.search(r"files in (\S+) \(removed at exit\)", text).group(1)
    assert not Path(folder).exists()  # the temporary folder went away with the server
