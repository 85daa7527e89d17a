"""Renders the sign-off Slack message of a run to a PNG for the README (docs/slack_message.png).

It builds the real Block Kit blocks (graceful.slack.message_blocks) from a request in a home's
decision store, draws them the way Slack lays out header / section / fields / actions, and takes a
headless-Chromium screenshot. Offline; Slack's own Block Kit Builder shows the same JSON.

    .venv/bin/python docs/render_slack_message.py --home graceful_demo_home [--request RUN_ID]
"""
import argparse
import html
import re
import subprocess
import tempfile
from pathlib import Path

from graceful import signoff, slack
from graceful.pipeline.configs import PipelineConfig

STYLE = """body{font-family:Lato,'Helvetica Neue',sans-serif;width:640px;margin:16px;color:#1d1c1d}
.msg{display:flex;gap:10px}.avatar{width:36px;height:36px;border-radius:6px;background:#4a154b}
.name{font-weight:900}.app{font-size:11px;background:#ddd;padding:1px 3px;border-radius:3px}
h3{margin:6px 0}.fields{display:grid;grid-template-columns:1fr 1fr;gap:6px 20px;margin:6px 0}
p{margin:6px 0;white-space:pre-line}code{background:#f6f6f6;border:1px solid #ddd;padding:1px 3px;
font-size:12px;color:#c01343}.btn{display:inline-block;padding:5px 14px;border-radius:4px;
font-weight:700;margin-right:8px;border:1px solid #ccc}.primary{background:#007a5a;color:#fff}
.danger{background:#fff;color:#e01e5a;border-color:#e01e5a}"""


def mrkdwn(text: str) -> str:
    text = html.escape(text)
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
        elif block["type"] == "actions":
            parts.append("<div>" + "".join(
                f'<span class="btn {e.get("style", "")}">{html.escape(e["text"]["text"])}</span>'
                for e in block["elements"]) + "</div>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>"
            "<div class='msg'><div class='avatar'></div><div><span class='name'>graceful</span> "
            f"<span class='app'>APP</span>{''.join(parts)}</div></div></body></html>")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--request", default=None, help="request id (default: the newest)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "slack_message.png"))
    args = parser.parse_args()
    store = signoff.Store(PipelineConfig(home=args.home).sign_off_store)
    request = store.request(args.request) if args.request else store.requests()[-1]
    with tempfile.TemporaryDirectory() as scratch:
        page = Path(scratch) / "message.html"
        page.write_text(render(slack.message_blocks(request)))
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=700,620", f"--screenshot={args.out}", page.as_uri()],
                       check=True, capture_output=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
