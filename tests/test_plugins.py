"""mtpkdot.plugins.load(): the built-in entries, and entries of installed packages found through the
``mtpkdot.plugins`` entry-point group (a module imported, a function called once); a broken plugin is
an error naming it. The registry itself imports nothing, so without load() it is empty."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from mtpkdot import plugins

FAKE_MODULE = '''
"""A third-party package's module that registers a method when imported."""
from mtpkdot.distill.method import Method
from mtpkdot.registry import METHODS


@METHODS.register("toy_method")
class ToyMethod(Method):
    """A toy method from an installed package."""

    name = "toy_method"
'''

FAKE_FUNCTION = '''
"""A third-party package's function that registers a loss when called."""
from mtpkdot.registry import LOSSES


def register():
    @LOSSES.register("toy_loss")
    def toy_loss(student, teacher):
        """A toy loss from an installed package."""
        return (student - teacher).abs().mean()
'''


def _fake_distribution(root: Path) -> None:
    """An installed distribution ``fake-plugin`` on ``root`` with two entries of the group."""
    (root / "fake_plugin.py").write_text(FAKE_MODULE)
    (root / "fake_plugin_fn.py").write_text(FAKE_FUNCTION)
    info = root / "fake_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[mtpkdot.plugins]\ntoy = fake_plugin\ntoy_fn = fake_plugin_fn:register\n"
    )


def _python(code: str, path: Path | None = None) -> str:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_registries_are_empty_until_load_fills_them_with_the_builtins():
    out = _python(
        "from mtpkdot import plugins, registry as r\n"
        "regs = (r.METHODS, r.LOSSES, r.BACKBONES, r.FUSIONS, r.DATASETS)\n"
        "print([len(x) for x in regs])\n"
        "plugins.load()\n"
        "print(sorted(r.METHODS), 'biovid' in r.DATASETS, 'jca' in r.FUSIONS, len(r.BACKBONES) > 0)\n"
    )
    empty, filled = out.strip().splitlines()
    assert empty == "[0, 0, 0, 0, 0]"
    assert filled == "['cosine', 'kl', 'mse', 'mtpkdot', 'none', 'pkdot'] True True True"


def test_an_installed_package_adds_entries_through_the_entry_point_group(tmp_path):
    _fake_distribution(tmp_path)
    out = _python(
        "from mtpkdot.cli import main; import sys; sys.argv = ['mtpkdot', 'list']; main()", tmp_path
    )
    assert "toy_method       A toy method from an installed package." in out
    assert "toy_loss         A toy loss from an installed package." in out


def _entry_points(*eps: EntryPoint):
    return lambda group: [ep for ep in eps if ep.group == group]


def test_a_register_function_runs_once(tmp_path, monkeypatch):
    (tmp_path / "counting_plugin.py").write_text("calls = []\n\ndef register():\n    calls.append(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint("counting", "counting_plugin:register", plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", _entry_points(ep))
    monkeypatch.setattr(plugins, "_loaded", set())
    plugins.load()
    plugins.load()
    import counting_plugin

    assert counting_plugin.calls == [1]


def test_a_broken_plugin_is_an_error_naming_it(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('needs a newer mtpkdot')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint("broken", "broken_plugin", plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", _entry_points(ep))
    monkeypatch.setattr(plugins, "_loaded", set())
    with pytest.raises(ImportError, match=r"plugin 'broken' \(broken_plugin\).*needs a newer mtpkdot"):
        plugins.load()
