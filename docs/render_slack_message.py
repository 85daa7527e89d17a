"""Renders what the approver sees in Slack to a PNG for the README (docs/slack_message.png): the
sign-off message of a run, its thread with the two plots, and the reason modal that Approve opens.

It builds the real Block Kit blocks (graceful.slack.message_blocks, reason_view) from a request in a
home's decision store and the real plots (graceful.report_html.evidence_plots) from the flip report
beside the request's report page, draws them the way Slack lays out header / section / fields /
context / actions / input, and takes a headless-Chromium screenshot. Offline; Slack's own Block Kit
Builder shows the same JSON.

    .venv/bin/python docs/render_slack_message.py --home graceful_demo_home [--request RUN_ID]
"""
import argparse
import base64
import html
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from graceful import report_html, signoff, slack
from graceful.pipeline.configs import PipelineConfig

STYLE = """body{font-family:Lato,'Helvetica Neue',sans-serif;width:680px;margin:16px;color:#1d1c1d}
.msg{display:flex;gap:10px}.avatar{width:36px;height:36px;border-radius:6px;background:#4a154b}
.name{font-weight:900}.app{font-size:11px;background:#ddd;padding:1px 3px;border-radius:3px}
h3{margin:6px 0}.fields{display:grid;grid-template-columns:1fr 1fr;gap:6px 20px;margin:6px 0}
p{margin:6px 0;white-space:pre-line}code{background:#f6f6f6;border:1px solid #ddd;padding:1px 3px;
word-break:break-all;
font-size:12px;color:#c01343}.btn{display:inline-block;padding:5px 14px;border-radius:4px;
font-weight:700;margin-right:8px;border:1px solid #ccc}.primary{background:#007a5a;color:#fff}
.danger{background:#fff;color:#e01e5a;border-color:#e01e5a}.context{font-size:12px;color:#616061}
.thread{margin:10px 0 0 46px;border-left:3px solid #ddd;padding-left:10px}
.thread img{width:300px;border:1px solid #ddd;border-radius:4px;margin:4px 6px 0 0;
vertical-align:top}
.modal{margin:18px 0 0 46px;width:520px;border:1px solid #ccc;border-radius:8px;padding:14px 18px;
box-shadow:0 4px 12px rgba(0,0,0,.15)}.modal h3{font-size:18px}.field{border:1px solid #aaa;
border-radius:4px;height:64px;padding:6px;color:#888;margin:4px 0 12px}.right{text-align:right}"""


# Slack's emoji codes as symbols the headless browser's fonts have (no colour-emoji font needed)
EMOJI = {":bar_chart:": "\u25A5", ":warning:": "\u26A0", ":white_check_mark:": "\u2714",
         ":no_entry:": "\u2716"}


def mrkdwn(text: str) -> str:
    text = html.escape(text)
    for code, emoji in EMOJI.items():
        text = text.replace(code, emoji)
    text = re.sub(r"\*(.+?)\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def render(blocks: list) -> str:
    parts = []
    for block in blocks:
        if block["type"] == "header":
            parts.append(f"<h3>{html.escape(block['text']['text'])}</h3>")
        elif block["type"] == "section" and "fields" in block:
            parts.append('<div class="fields">' + "".join(
                f"<p>{mrkdwn(f['text'])}</p>" for f in block["fields"]) + "</div>")
        elif block["type"] == "section":
            parts.append(f"<p>{mrkdwn(block['text']['text'])}</p>")
        elif block["type"] == "context":
            parts.append('<p class="context">' + " ".join(
                mrkdwn(e["text"]) for e in block["elements"]) + "</p>")
        elif block["type"] == "input":
            parts.append(f"<p><b>{html.escape(block['label']['text'])}</b></p><div class='field'>"
                         f"{html.escape(block['element']['placeholder']['text'])}</div>")
        elif block["type"] == "actions":
            parts.append("<div>" + "".join(
                f'<span class="btn {e.get("style", "")}">{html.escape(e["text"]["text"])}</span>'
                for e in block["elements"]) + "</div>")
    return "".join(parts)


def page(request: signoff.Request, plots: dict) -> str:
    """The message, its thread (the plots, as files_upload_v2 shares them) and the Approve modal."""
    message = render(slack.message_blocks(request, slack.PLOTS_FOLLOW if plots else None))
    thread = "".join(f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}" '
                     f'alt="{html.escape(slack.PLOT_TITLES[name])}">' for name, data in plots.items())
    view = slack.reason_view(request, signoff.APPROVE)
    modal = (f"<div class='modal'><h3>{html.escape(view['title']['text'])}</h3>"
             f"{render(view['blocks'])}<div class='right'><span class='btn'>"
             f"{html.escape(view['close']['text'])}</span><span class='btn primary'>"
             f"{html.escape(view['submit']['text'])}</span></div></div>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>"
            "<div class='msg'><div class='avatar'></div><div><span class='name'>graceful</span> "
            f"<span class='app'>APP</span>{message}</div></div>"
            + (f"<div class='thread'><span class='name'>graceful</span> <span class='app'>APP"
               f"</span><p>Evidence for run {html.escape(request.request_id)}</p>{thread}</div>"
               if plots else "") + modal + "</body></html>")


def plots_of(request: signoff.Request) -> dict:
    """The evidence plots of the flip report beside the request's report page (none for a first
    model, or when the report is not on this machine)."""
    path = os.path.join(os.path.dirname(request.evidence["report"]), report_html.REPORT_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        report = json.load(handle)
    return report_html.evidence_plots(report) if report.get("has_baseline") else {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--request", default=None, help="request id (default: the newest)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "slack_message.png"))
    args = parser.parse_args()
    store = signoff.Store(PipelineConfig(home=args.home).sign_off_store)
    request = store.request(args.request) if args.request else store.requests()[-1]
    with tempfile.TemporaryDirectory() as scratch:
        html_file = Path(scratch) / "message.html"
        html_file.write_text(page(request, plots_of(request)))
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=720,1240", f"--screenshot={args.out}", html_file.as_uri()],
                       check=True, capture_output=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
