"""`dvc plots show` renders with no network: the committed page carries Vega inline, and a real headless
Chromium with every connection cut draws each plot of dvc.yaml from it, while DVC's stock (CDN) page draws none."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from services import chromium

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / ".dvc" / "plots" / "offline.html"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def template():
    return _script("offline_plots_template")


@pytest.fixture(scope="module")
def plots_check():
    return _script("plots_check")


def test_the_committed_page_is_built_from_the_vendored_builds(template, capsys) -> None:
    assert template.main(["--check"]) == 0, capsys.readouterr().out


def test_the_page_loads_nothing_and_gives_dvc_no_place_for_its_cdn_scripts() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page
    assert not re.search(r"<script[^>]*\ssrc\s*=", page) and not re.search(r"<link\b", page)
    starts = [page.index(f"<script type=\"text/javascript\">/* {name} */") for name in
              ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")]
    assert starts == sorted(starts)  # each build needs the ones before it
    assert page.index("{plot_divs}") > starts[-1]  # the plots' inline vegaEmbed calls run after the libraries


def test_dvc_is_configured_to_fill_the_offline_page() -> None:
    done = subprocess.run([sys.executable, "-m", "dvc", "config", "plots.html_template"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # DVC reads a relative html_template against the .dvc folder.
    assert (ROOT / ".dvc" / done.stdout.strip()).resolve() == PAGE.resolve()


def test_the_generator_refuses_builds_that_would_break_the_page(template, tmp_path) -> None:
    with pytest.raises(SystemExit, match="</script"):
        template.inline_script("x.js", 'var a = "</script>";')
    with pytest.raises(SystemExit, match="plot_divs"):
        template.inline_script("x.js", 'var a = "{plot_divs}";')
    for name in template.LIBRARIES:
        (tmp_path / name).write_text('var version = "0.0.1";')
    with pytest.raises(SystemExit, match="is not version"):
        template.build_page(tmp_path)


def test_a_plot_counts_as_drawn_only_with_a_sized_vega_surface_inside_its_div(plots_check) -> None:
    dom = ('<body><div id="a"><div class="vega-embed"><canvas class="marks" width="400" height="300"></canvas>'
           '</div></div><div id="b"><canvas class="marks" width="0" height="0"></canvas></div>'
           '<div id="c"></div><canvas class="marks" width="9" height="9"></canvas>'
           '<div id="d"><svg class="marks" width="10" height="20"><g></g></svg></div></body>')
    assert plots_check.drawn_plots(dom, ["a", "b", "c", "d"]) == ["a", "d"]


def test_without_chromium_the_check_skips_saying_how_to_install_it(plots_check, monkeypatch, capsys) -> None:
    monkeypatch.setattr(plots_check, "find_chromium", lambda: None)
    assert plots_check.main([]) == 0
    assert capsys.readouterr().out.startswith("skipped: no Chromium")


@pytest.mark.slow
def test_the_offline_page_draws_every_plot_with_the_network_cut(plots_check, tmp_path) -> None:
    result = plots_check.check(chromium(), out=tmp_path)
    assert result.expected == len(plots_check.yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]) > 0
    assert len(result.divs) == result.expected
    assert result.drawn == result.divs, f"not drawn: {sorted(set(result.divs) - set(result.drawn))}"
    assert result.requests == [] and result.uncaught == []
    assert result.ok
    assert (tmp_path / "plots.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_the_stock_cdn_page_draws_nothing_offline(plots_check, capsys) -> None:
    chromium()  # installs it if missing, so main() does not skip
    assert plots_check.main(["--stock"]) == 1
    out = capsys.readouterr().out
    expected = plots_check.expected_plots()
    assert f": 0/{expected} drawn, {expected} in the page" in out
    # The page asked the CDN for its scripts and every request failed: the network really was cut.
    requests = [line for line in out.splitlines() if line.startswith("REQUEST")]
    assert len(requests) == 3 and all("https://cdn.jsdelivr.net/npm/vega" in line for line in requests)
    assert all("(ERR_" in line for line in requests), requests
    assert "ERROR     Uncaught ReferenceError: vegaEmbed is not defined" in out
