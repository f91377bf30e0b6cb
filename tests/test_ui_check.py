"""scripts/ui_check.py without a browser: it skips with the reason and the fix, and reads a page's text as a
reader sees it. (The browser run itself is the script's job: `python scripts/ui_check.py`, README.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("ui_check", ROOT / "scripts/ui_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_without_chromium_it_skips_saying_how_to_install_it(monkeypatch, capsys, tmp_path) -> None:
    script = _script()
    monkeypatch.setattr(script.shutil, "which", lambda name: None)
    assert script.main(["--out", str(tmp_path / "shots")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("skipped: no Chromium") and "apt-get install chromium" in out
    assert not (tmp_path / "shots").exists()  # nothing started, nothing written


def test_page_text_is_what_a_reader_sees() -> None:
    dom = ('<html><head><style>.a{}</style><script>var x = "iim/1_from_0";</script></head><body>'
           '<div>train_loss</div><span>2.05</span>&amp;<p>nb201-isdarts-seed0 (iim/1_from_0/none)</p></body></html>')
    text = _script().page_text(dom)
    assert "train_loss 2.05 &" in text and "nb201-isdarts-seed0 (iim/1_from_0/none)" in text
    assert "var x" not in text and ".a{}" not in text


def test_the_pages_open_in_model_training_mode_and_chart_one_edge() -> None:
    keys = ["iim/1_from_0/none", "iim/1_from_0/skip_connect", "iim/2_from_0/none"]
    pages = _script().pages(5077, "1", "abc", "nb201-isdarts-seed0", keys)
    assert all("workflowType=machine_learning" in page.url for page in pages)
    chart = pages[-1]
    assert chart.expect == [f"nb201-isdarts-seed0 ({key})" for key in keys[:2]]
