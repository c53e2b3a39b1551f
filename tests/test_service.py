"""systemd notification, logging set-up and the once-per-bin log."""

import faulthandler
import logging
import logging.handlers
import os
import re
import signal
import socket
import sys
import uuid

import pytest

from ifcbfs import logonce, service


@pytest.fixture
def dgram_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def test_notify_sends_one_datagram_to_path_socket(dgram_socket, monkeypatch):
    path, sock = dgram_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert service.notify("READY=1", "STATUS=serving /data") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving /data"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only")
def test_notify_abstract_socket(monkeypatch):
    name = "ifcbfs-test-" + uuid.uuid4().hex
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert service.notify("STOPPING=1") is True
        assert sock.recv(4096) == b"STOPPING=1"
    finally:
        sock.close()


def test_helpers_send_expected_fields(dgram_socket, monkeypatch):
    path, sock = dgram_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert service.ready("mounted /mnt\nfrom /data")
    assert sock.recv(4096) == b"READY=1\nSTATUS=mounted /mnt from /data"
    assert service.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert service.status("42 bins")
    assert sock.recv(4096) == b"STATUS=42 bins"


def test_notify_without_systemd_returns_false(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert service.notify("READY=1") is False
    assert service.ready("x") is False
    assert service.stopping() is False
    assert service.status("x") is False


@pytest.mark.parametrize("address", [
    "/nonexistent/dir/notify.sock",
    "@ifcbfs-nobody-listens-" + uuid.uuid4().hex,
    "relative/path",
    "vsock:2:1234",
])
def test_notify_bad_socket_never_raises(monkeypatch, address):
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert service.notify("READY=1") is False


def test_notify_to_a_regular_file_never_raises(tmp_path, monkeypatch):
    path = tmp_path / "not-a-socket"
    path.write_text("")
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert service.notify("READY=1") is False


def test_notify_without_fields_sends_nothing(dgram_socket, monkeypatch):
    path, _ = dgram_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert service.notify() is False


def test_log_bad_bin_logs_once_per_key(caplog):
    logger = logging.getLogger("ifcbfs.test.badbin")
    key_a = "D20240101T000000_IFCB999-" + uuid.uuid4().hex
    key_b = key_a + "-other"
    with caplog.at_level(logging.WARNING, logger=logger.name):
        assert logonce.log_bad_bin(logger, key_a, "truncated .roi") is True
        for _ in range(50):
            assert logonce.log_bad_bin(logger, key_a, "truncated .roi") is False
        assert logonce.log_bad_bin(logger, key_b, "bad header") is True
    lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert lines == [f"{key_a}: truncated .roi", f"{key_b}: bad header"]


def test_rate_limited_log_is_bounded(caplog):
    logger = logging.getLogger("ifcbfs.test.bounded")
    limiter = logonce.RateLimitedLog(maxkeys=3)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for key in "abcd":
            assert limiter.log(logger, key, "bad")
        assert len(limiter._seen) == 3
        assert not limiter.log(logger, "d", "bad")   # still remembered
        assert limiter.log(logger, "a", "bad")       # oldest was forgotten
    assert len([r for r in caplog.records if r.name == logger.name]) == 5


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    for h in root.handlers[:]:
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_setup_logging_foreground(restore_root_logger, capsys):
    service.setup_logging(foreground=True, debug=False)
    root = restore_root_logger
    assert root.level == logging.INFO
    assert len(root.handlers) == 1
    logging.getLogger("ifcbfs.x").info("hello")
    logging.getLogger("ifcbfs.x").debug("hidden")
    err = capsys.readouterr().err
    assert "ifcbfs: INFO hello" in err
    assert "hidden" not in err
    service.setup_logging(foreground=True, debug=True)
    assert root.level == logging.DEBUG and len(root.handlers) == 1


def test_setup_logging_background_without_dev_log(restore_root_logger, monkeypatch):
    monkeypatch.setattr(service, "SYSLOG_SOCKET", "/nonexistent/log")
    service.setup_logging(foreground=False, debug=False)
    (handler,) = restore_root_logger.handlers
    assert isinstance(handler, logging.StreamHandler)


def test_setup_logging_background_uses_syslog(restore_root_logger, monkeypatch, tmp_path):
    path = tmp_path / "log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        monkeypatch.setattr(service, "SYSLOG_SOCKET", str(path))
        service.setup_logging(foreground=False, debug=False)
        (handler,) = restore_root_logger.handlers
        assert isinstance(handler, logging.handlers.SysLogHandler)
        logging.getLogger("ifcbfs.x").warning("bin broken")
        msg = sock.recv(4096)
        assert f"ifcbfs[{os.getpid()}]: WARNING bin broken".encode() in msg
    finally:
        for h in restore_root_logger.handlers[:]:
            restore_root_logger.removeHandler(h)
            h.close()
        sock.close()


def test_enable_stack_dumps():
    service.enable_stack_dumps(sys.stderr)
    assert faulthandler.unregister(signal.SIGUSR1) is True


def test_stack_dumps_follow_a_log_file(restore_root_logger, tmp_path):
    path = tmp_path / "ifcbfs.log"
    service.enable_stack_dumps(service.setup_logging(foreground=False, debug=False, logfile=str(path)))
    try:
        logging.getLogger("ifcbfs.x").warning("bin broken")
        os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        faulthandler.unregister(signal.SIGUSR1)
        for h in restore_root_logger.handlers[:]:
            restore_root_logger.removeHandler(h)
            h.close()
    text = path.read_text()
    assert re.search(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ifcbfs\[{os.getpid()}\]: WARNING bin broken$", text, re.M)
    assert "most recent call first" in text and "test_stack_dumps_follow_a_log_file" in text


def test_stack_dumps_with_syslog_are_log_lines(caplog):
    old = signal.getsignal(signal.SIGUSR1)
    service.enable_stack_dumps(None)
    try:
        with caplog.at_level(logging.WARNING, logger="ifcbfs.service"):
            os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert any("stack of thread MainThread" in r.getMessage() and "test_stack_dumps_with_syslog" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("given, foreground, syslog, env, want", [
    ("/var/log/x.log", False, False, {}, "/var/log/x.log"),
    ("/var/log/x.log", True, True, {}, "/var/log/x.log"),
    ("", True, False, {}, None),                    # stderr: the terminal, or the journal
    ("", False, True, {}, None),                    # syslog
    ("", False, False, {"XDG_STATE_HOME": "/st"}, "/st/ifcbfs/srv-ifcb-images.log"),
    ("", False, False, {"XDG_STATE_HOME": "rel", "HOME": "/home/u"}, "/home/u/.local/state/ifcbfs/srv-ifcb-images.log"),
    ("", False, False, {"HOME": "/home/u"}, "/home/u/.local/state/ifcbfs/srv-ifcb-images.log"),
])
def test_where_logs_go(monkeypatch, tmp_path, given, foreground, syslog, env, want):
    monkeypatch.setattr(service, "SYSLOG_SOCKET", str(tmp_path / ("log" if syslog else "absent")))
    (tmp_path / "log").touch()
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert service.log_file(given, foreground, "/srv/ifcb-images") == want


def test_an_unwritable_log_file_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    assert service.log_file_problem(str(tmp_path / "state" / "ifcbfs" / "m.log")) is None
    assert "cannot be written" in service.log_file_problem(str(tmp_path / "file" / "m.log"))
