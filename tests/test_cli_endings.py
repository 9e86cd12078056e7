"""Every way a command can end prints one clear line (issue 19): Ctrl-C, a full disk, a
read-only folder, the unexpected, a plugin calling sys.exit; and nothing printed carries a
terminal control sequence from a spec or a run folder."""

import errno
import subprocess
import sys

import pytest

from xspec.cli import main


def _main(monkeypatch, capsys, argv, fail=None) -> tuple[int, str]:
    if fail is not None:
        monkeypatch.setattr("xspec.cli.app", lambda standalone_mode: fail())
    monkeypatch.setattr(sys, "argv", ["xspec", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.out + captured.err


def _raise(exc):
    def fail():
        raise exc
    return fail


def test_ctrl_c_prints_the_promised_line(monkeypatch, capsys):
    code, out = _main(monkeypatch, capsys, ["run", "s.toml"], _raise(KeyboardInterrupt()))
    assert code == 130
    assert out.strip() == "interrupted: finished runs are kept; `xspec run s.toml` resumes the rest"


def test_ctrl_c_inside_a_command_prints_it_too(monkeypatch, capsys, write_spec, base_spec):
    def interrupt(spec):
        raise KeyboardInterrupt

    monkeypatch.setattr("xspec.study.open_study", interrupt)
    code, out = _main(monkeypatch, capsys, ["validate", "s.toml"])
    assert (code, out.strip()) == (130, "interrupted: finished runs are kept; "
                                         "`xspec validate s.toml` resumes the rest")


@pytest.mark.parametrize("exc, line", [
    (OSError(errno.ENOSPC, "No space left on device", "/ws/runs/x/last.pt"),
     "error: no space left on the device holding /ws/runs/x/last.pt; free some space and run "
     "the command again (finished runs are kept)"),
    (OSError(errno.EROFS, "Read-only file system", "/ws/reports"),
     "error: /ws/reports: read-only file system (a read-only or someone else's folder?); use a "
     "workspace you can write to (-w)"),
    (ValueError("odd\nsecond line"),
     "error: unexpected ValueError: odd; this is a bug in xspec: run the command again with "
     "--debug for the traceback"),
])
def test_the_unexpected_is_one_line_without_a_traceback(monkeypatch, capsys, exc, line):
    code, out = _main(monkeypatch, capsys, ["report", "s.toml"], _raise(exc))
    assert (code, out.strip()) == (1, line)


def test_debug_still_shows_the_traceback(monkeypatch, capsys):
    monkeypatch.setattr("xspec.cli.app", lambda standalone_mode: _raise(ValueError("x"))())
    monkeypatch.setattr(sys, "argv", ["xspec", "report", "s.toml", "--debug"])
    with pytest.raises(ValueError):
        main()


def test_a_plugin_calling_sys_exit_is_named(write_spec, base_spec, tmp_path):
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(3)\n")
    path = write_spec(base_spec.replace('name = "t"', 'name = "t"\nplugins = ["quits"]'))
    proc = subprocess.run([sys.executable, "-m", "xspec.cli", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"plugin 'quits' ({tmp_path / 'quits.py'}) called sys.exit(3) while being imported" \
        in proc.stderr


def test_escape_sequences_from_a_spec_never_reach_the_terminal(write_spec, base_spec):
    path = write_spec(base_spec.replace("[model]", "[model]\n\"\\u001b]0;owned\\u0007x\" = 1"))
    proc = subprocess.run([sys.executable, "-m", "xspec.cli", "validate", str(path)],
                          capture_output=True, text=True, env={"TERM": "xterm",
                                                               "FORCE_COLOR": "1",
                                                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert "\x07" not in proc.stderr and "\x1b]0" not in proc.stderr
    assert "model.\\x1b]0;owned" in proc.stderr  # shown escaped; rich drops the bell
