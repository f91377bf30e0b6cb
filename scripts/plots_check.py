"""Check that the page `dvc plots show` writes draws every plot with the network cut off.

    python scripts/plots_check.py                  # the committed page (.dvc/config plots.html_template)
    python scripts/plots_check.py --stock          # DVC's stock page, which loads Vega from a CDN: fails offline
    python scripts/plots_check.py --out logs/plots_check   # also keep the page, its DOM and a screenshot

It runs `dvc plots show` over the committed reports/plots/*.csv into a temporary folder, opens the page from
file:// in headless Chromium with every connection sent to a dead proxy and every host name unresolvable, and
then reads three things: the rendered DOM (each plot's <div> must hold a drawn Vega canvas or SVG, one per
plot that dvc.yaml defines), Chromium's network log (the page must have asked for nothing beyond file://) and
its console (no uncaught error). Exit 0 when all hold, 1 otherwise. Without Chromium (`apt-get install
chromium`) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from ui_check import NO_CHROMIUM, find_chromium  # noqa: E402 (after the path set-up)

# Chromium's virtual time lets the page's scripts and timers finish without waiting in real time; the 13
# plots draw in well under a second of it.
PAGE_BUDGET_MS = 20_000
CHROMIUM_TIMEOUT_S = 180
DVC_TIMEOUT_S = 300
# Nothing listens on the discard port, so every proxied connection fails at once; `<-loopback>` sends even
# localhost through the proxy, and the resolver rule makes every name lookup fail should a request bypass it.
OFFLINE_FLAGS = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                 "--host-resolver-rules=MAP * ~NOTFOUND"]
# Chromium's own update and account traffic is quieted where flags allow; what remains is told apart from the
# page's requests in the network log (see page_requests).
QUIET_FLAGS = ["--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-default-apps"]
LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome", "chrome-extension", "devtools"}
DIV_IN_PAGE = re.compile(r'<div id = "([^"]+)"')  # how dvc_render's VegaRenderer opens each plot's div


@dataclass
class Request:
    url: str
    error: str  # Chromium's net error name, "OK" when it was answered


@dataclass
class Result:
    expected: int  # plots dvc.yaml defines
    divs: list[str]  # the plot divs DVC wrote into the page
    drawn: list[str]  # those that hold a drawn chart
    requests: list[Request] = field(default_factory=list)  # the page's requests beyond file://
    uncaught: list[str] = field(default_factory=list)  # uncaught errors on the page's console

    @property
    def ok(self) -> bool:
        return (len(self.divs) == self.expected and self.drawn == self.divs and not self.requests
                and not self.uncaught)


def expected_plots(dvc_yaml: Path = ROOT / "dvc.yaml") -> int:
    """How many plots `dvc plots show` should draw: the top-level `plots:` entries and the stages' `plots:` outs."""
    spec = yaml.safe_load(dvc_yaml.read_text()) or {}
    stage_plots = sum(len(stage.get("plots") or []) for stage in (spec.get("stages") or {}).values())
    return len(spec.get("plots") or []) + stage_plots


def stock_template() -> str:
    """DVC's own page (dvc_render's default), whose {scripts} placeholder gets the CDN <script> tags."""
    from dvc_render.html import PAGE_HTML

    return PAGE_HTML


def render_plots(out: Path, template: Path | None = None) -> Path:
    """Run `dvc plots show -o out` in the repository (with `template` instead of the configured page if given)."""
    cmd = [sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)]
    if template is not None:
        cmd += ["--html-template", str(template)]
    out.parent.mkdir(parents=True, exist_ok=True)  # DVC makes the folder but not its parents
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=DVC_TIMEOUT_S)
    page = out / "index.html"
    if done.returncode != 0 or not page.is_file():
        raise SystemExit(f"`{' '.join(cmd)}` failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")
    return page


class _Charts(HTMLParser):
    """Finds, for each plot div, the Vega canvas or SVG (class "marks") that vega-embed draws inside it."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.ids = set(ids)
        self.open_divs: list[str | None] = []
        self.drawn: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "div":
            self.open_divs.append(attr.get("id") if attr.get("id") in self.ids else None)
            return
        owner = next((d for d in reversed(self.open_divs) if d), None)
        if owner and tag in ("canvas", "svg") and "marks" in attr.get("class", "").split():
            # A chart that failed half-way leaves no sized surface; a drawn one is sized to the plot.
            if _number(attr.get("width")) > 0 and _number(attr.get("height")) > 0:
                self.drawn.add(owner)

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.open_divs:
            self.open_divs.pop()


def _number(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


def drawn_plots(dom: str, ids: list[str]) -> list[str]:
    """The ids (in page order) whose div holds a drawn chart in the rendered `dom`."""
    parser = _Charts(ids)
    parser.feed(dom)
    return [i for i in ids if i in parser.drawn]


def page_requests(net_log: Path) -> list[Request]:
    """The requests the page made beyond local schemes, with how each ended, from Chromium's --log-net-log.

    A request is the page's when its network isolation key or site-for-cookies names the file:// page; the
    browser's own traffic (updates, accounts) has neither.
    """
    text = net_log.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a browser killed mid-run leaves the event list open
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    kinds = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    errors = {number: name for name, number in log["constants"]["netError"].items()}
    started: dict[int, str] = {}
    outcome: dict[int, str] = {}
    for event in log["events"]:
        params, source = event.get("params") or {}, event["source"]["id"]
        if kinds.get(event["type"]) == "URL_REQUEST_START_JOB" and "url" in params:
            ours = "file://" in params.get("network_isolation_key", "") + params.get("site_for_cookies", "")
            if ours and urlsplit(params["url"]).scheme not in LOCAL_SCHEMES:
                started[source] = params["url"]
        if "net_error" in params:
            outcome[source] = errors.get(params["net_error"], str(params["net_error"]))
    return [Request(url, outcome.get(source, "OK")) for source, url in started.items()]


def console_errors(stderr: str) -> list[str]:
    """Uncaught errors the page logged (Chromium prints console messages with --enable-logging=stderr)."""
    messages = re.findall(r':CONSOLE[:(]\d+\)?\] "(.*)", source:', stderr)
    return [m for m in messages if m.startswith("Uncaught")]


def open_offline(chromium: str, page: Path, work: Path, screenshot: Path | None = None) -> tuple[str, Path, str]:
    """Load `page` offline in headless Chromium: (its rendered DOM, the network log, Chromium's stderr)."""
    net_log = work / "netlog.json"
    flags = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={work / 'profile'}", *QUIET_FLAGS, *OFFLINE_FLAGS,
             f"--virtual-time-budget={PAGE_BUDGET_MS}"]
    runs = [["--window-size=1300,1000", "--enable-logging=stderr", "--v=0", f"--log-net-log={net_log}",
             "--dump-dom"]]
    if screenshot is not None:  # tall enough for every plot of dvc.yaml on one image
        runs.append(["--window-size=1300,7600", f"--screenshot={screenshot}"])
    dom, log = "", ""
    for extra in runs:
        done = subprocess.run([*flags, *extra, page.resolve().as_uri()], capture_output=True, text=True,
                              timeout=CHROMIUM_TIMEOUT_S)
        if done.returncode != 0:
            raise SystemExit(f"chromium failed on {page}: {done.stderr[-600:]}")
        if "--dump-dom" in extra:
            dom, log = done.stdout, done.stderr
    return dom, net_log, log


def check(chromium: str, stock: bool = False, out: Path | None = None) -> Result:
    """Render the plots with the configured page (or DVC's stock one) and load them offline."""
    with tempfile.TemporaryDirectory(prefix="isdarts-plots-") as tmp:
        work = Path(tmp)
        template = None
        if stock:
            template = work / "stock.html"
            template.write_text(stock_template(), encoding="utf-8")
        page = render_plots(work / "dvc_plots", template)
        ids = DIV_IN_PAGE.findall(page.read_text(encoding="utf-8"))
        screenshot = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(page, out / "index.html")
            screenshot = out / "plots.png"
        dom, net_log, log = open_offline(chromium, page, work, screenshot)
        if out is not None:
            (out / "dom.html").write_text(dom, encoding="utf-8")
        return Result(expected_plots(), ids, drawn_plots(dom, ids), page_requests(net_log), console_errors(log))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stock", action="store_true",
                        help="use DVC's stock page (Vega from a CDN) instead of the configured one")
    parser.add_argument("--out", type=Path, help="keep the page, its rendered DOM and a screenshot here")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print(NO_CHROMIUM)
        return 0
    result = check(chromium, stock=args.stock, out=args.out)
    for div in result.divs:
        print(f"{'drawn    ' if div in result.drawn else 'NOT DRAWN'} {div}")
    for request in result.requests:
        print(f"REQUEST   {request.url} ({request.error})")
    for error in result.uncaught:
        print(f"ERROR     {error}")
    page = "DVC's stock page" if args.stock else "the configured page"
    print(f"plots offline ({page}): {len(result.drawn)}/{result.expected} drawn, {len(result.divs)} in the page, "
          f"{len(result.requests)} outside requests, {len(result.uncaught)} uncaught errors"
          + (f"; screenshot {args.out / 'plots.png'}" if args.out else ""))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
