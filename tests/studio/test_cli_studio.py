"""`variant studio` as a command: flags, the message without the extra, the URL it prints."""

import subprocess
import sys
import time
import urllib.request

import pytest

from variant.cli.main import main


def test_help_names_host_and_port(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["studio", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out and "--max-memory" in out


def test_without_the_extra_the_message_names_the_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` fails as if absent
    monkeypatch.delitem(sys.modules, "variant.studio.app", raising=False)
    assert main(["studio"]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[studio]"' in err and "Gradio" in err


@pytest.mark.parametrize("args, words", [
    (["--max-images", "0"], "argument --max-images: expected a whole number >= 1"),
    (["--profile", "missing.json"], "argument --profile: 'missing.json' does not exist"),
    (["--max-memory", "lots"], "cannot read the size 'lots'"),
    (["--front", "missing.json"], "argument --front: 'missing.json' does not exist"),
    (["--allow-other-device"], "give --front front.json too"),
    (["--allow-other-model"], "give --front front.json too"),
])
def test_bad_flags_name_the_fix(args, words, capsys):
    pytest.importorskip("gradio", reason='the studio extra is not installed')
    try:
        code = main(["studio", *args])
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    assert code == 2 and words in capsys.readouterr().err


def test_the_command_prints_its_loopback_url_and_serves(port):
    pytest.importorskip("gradio", reason='the studio extra is not installed')
    proc = subprocess.Popen([sys.executable, "-m", "variant", "studio", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, lines = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "variant studio exited:\n" + "".join(lines)
            lines.append(line)
            if line.startswith("serving at "):
                break
        url = f"http://127.0.0.1:{port}/"
        assert lines[-1].strip() == f"serving at {url} (Ctrl+C stops)"
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200 and b"VARiant Studio" in page.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
