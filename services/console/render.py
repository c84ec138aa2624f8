"""Node output as HTML: JSON as a collapsible tree, text as safe markdown, rounds as a diff.

Everything is escaped first; markup is only ever added around escaped text. Links keep http(s) URLs
only, open in a new tab, and carry rel="noopener noreferrer nofollow".
"""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from typing import Any

from markupsafe import Markup, escape

from shared.models import ABORT_ACTION_IDS
from shared.outputs import output_kind

MAX_TREE_NODES = 4000
OPEN_DEPTH = 2


# ---------------------------------------------------------------------- what kind of output
def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def as_text(value: Any) -> str:
    """The text a reviewer edits and diffs: strings as they are, everything else pretty JSON."""
    if isinstance(value, str):
        if output_kind(value) == "json-text":
            return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def render_output(value: Any) -> Markup:
    """Never fails on content: whatever the renderers cannot take is shown as escaped plain text."""
    try:
        kind = output_kind(value)
        if kind == "text":
            return markdown(value)
        return json_tree(json.loads(value) if kind == "json-text" else value)
    except (RecursionError, ValueError, TypeError, IndexError, KeyError):
        text = value if isinstance(value, str) else repr(value)
        return Markup('<pre class="raw">{}</pre>').format(clean_text(text))


_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` without NUL (the markdown renderer's placeholder mark) and without lone surrogates (no
    encoding can send them): each becomes U+FFFD, so what is shown stays honest. (form_html strips its
    own slot marks, U+E000/U+E001, from the form's source before it adds them.)"""
    return _UNSAFE.sub("\ufffd", text)


# ---------------------------------------------------------------------- JSON tree
def json_tree(value: Any) -> Markup:
    budget = [MAX_TREE_NODES]
    return Markup('<div class="jt">') + _node(value, None, 0, budget) + Markup("</div>")


def _key(key: Any) -> Markup:
    if key is None:
        return Markup("")
    label = escape(clean_text(key)) if isinstance(key, str) else escape(f"[{key}]")
    return Markup('<span class="jt-key">{}</span><span class="jt-colon">: </span>').format(label)


def _leaf(value: Any) -> Markup:
    if value is None:
        return Markup('<span class="jt-null">null</span>')
    if isinstance(value, bool):
        return Markup('<span class="jt-bool">{}</span>').format("true" if value else "false")
    if isinstance(value, (int, float)):
        return Markup('<span class="jt-num">{}</span>').format(json.dumps(value))
    text = clean_text(str(value))
    cls = "jt-str jt-long" if len(text) > 120 or "\n" in text else "jt-str"
    return Markup('<span class="{}">"{}"</span>').format(cls, text)


def _node(value: Any, key: Any, depth: int, budget: list[int]) -> Markup:
    budget[0] -= 1
    if budget[0] < 0:
        return Markup('<div class="jt-row jt-more">…</div>')
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict) and value:
        items, open_, close, count = value.items(), "{", "}", f"{len(value)} key{'s' if len(value) != 1 else ''}"
    elif isinstance(value, list) and value:
        items, open_, close, count = enumerate(value), "[", "]", f"{len(value)} item{'s' if len(value) != 1 else ''}"
    else:
        shown = Markup("{}") if value == {} else Markup("[]") if value == [] else _leaf(value)
        return Markup('<div class="jt-row">{}{}</div>').format(_key(key), shown)
    children = Markup("").join(_node(v, k, depth + 1, budget) for k, v in items)
    return Markup('<details class="jt-node"{}><summary>{}<span class="jt-brace">{}</span>'
                  '<span class="jt-count">{}</span></summary><div class="jt-children">{}</div>'
                  '<span class="jt-brace">{}</span></details>').format(
        Markup(" open") if depth < OPEN_DEPTH else Markup(""), _key(key), open_, count, children, close)


# ---------------------------------------------------------------------- markdown, a safe subset
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")
_BARE = re.compile(r"\bhttps?://(?:(?!&#)[^\s<])+")
_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?!\*)|(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")


def _autolink(url: str, keep) -> str:
    trail = len(url) - len(url.rstrip(".,;:!?)]"))
    url, rest = (url[:-trail], url[-trail:]) if trail else (url, "")
    return keep(f'<a href="{url}" rel="noopener noreferrer nofollow" target="_blank">{url}</a>') + rest


def _inline(text: str) -> str:
    """`text` is already escaped; code spans are protected from the other rules."""
    spans: list[str] = []

    def keep(html: str) -> str:
        spans.append(html)
        return f"\x00{len(spans) - 1}\x00"

    text = _CODE.sub(lambda m: keep(f"<code>{m.group(1)}</code>"), text)
    text = _LINK.sub(lambda m: keep(f'<a href="{m.group(2)}" rel="noopener noreferrer nofollow" '
                                    f'target="_blank">{m.group(1)}</a>'), text)
    text = _BARE.sub(lambda m: _autolink(m.group(0), keep), text)
    text = _BOLD.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", text)
    text = _ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)
    # The source has no NUL left (markdown() replaced them), so every placeholder is one of ours.
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))] if int(m.group(1)) < len(spans) else "",
                  text)


def markdown(source: str) -> Markup:
    lines = str(escape(clean_text(source))).replace("\r\n", "\n").split("\n")
    out: list[str] = []
    para: list[str] = []
    list_tag: str | None = None
    in_code = False
    code: list[str] = []

    def flush_para() -> None:
        if para:
            out.append("<p>" + "<br>".join(_inline(p) for p in para) + "</p>")
            para.clear()

    def close_list() -> None:
        nonlocal list_tag
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    for line in lines:
        if line.strip().startswith("```"):
            if in_code:
                out.append("<pre><code>" + "\n".join(code) + "</code></pre>")
                code.clear()
            else:
                flush_para()
                close_list()
            in_code = not in_code
            continue
        if in_code:
            code.append(line)
            continue
        heading, bullet, numbered = _HEADING.match(line), _BULLET.match(line), _NUMBERED.match(line)
        if not line.strip():
            flush_para()
            close_list()
        elif heading:
            flush_para()
            close_list()
            level = min(len(heading.group(1)) + 2, 6)  # h3..h6: below the page's own headings
            out.append(f'<h{level} class="md-h">{_inline(heading.group(2))}</h{level}>')
        elif item := bullet or numbered:
            flush_para()
            tag = "ul" if bullet else "ol"
            if list_tag != tag:
                close_list()
                out.append(f"<{tag}>")
                list_tag = tag
            out.append(f"<li>{_inline(item.group(1))}</li>")
        else:
            close_list()
            para.append(line)
    if in_code:
        out.append("<pre><code>" + "\n".join(code) + "</code></pre>")
    flush_para()
    close_list()
    return Markup('<div class="md">' + "\n".join(out) + "</div>")


# ---------------------------------------------------------------------- diff between rounds
def diff_lines(before: str, after: str, context: int = 3) -> list[dict[str, Any]]:
    """Line diff with the changed words marked: [{"op": "eq"|"del"|"ins"|"gap", "html": Markup}]."""
    old, new = before.splitlines() or [""], after.splitlines() or [""]
    rows: list[dict[str, Any]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            block = old[i1:i2]
            head = block[:context] if rows else []
            tail = block[-context:] if i2 < len(old) else []
            hidden = len(block) - len(head) - len(tail)
            if hidden <= 1:
                head, tail, hidden = block, [], 0
            rows += [{"op": "eq", "html": escape(line)} for line in head]
            if hidden:
                rows.append({"op": "gap", "html": escape(f"… {hidden} unchanged line{'s' if hidden > 1 else ''}")})
            rows += [{"op": "eq", "html": escape(line)} for line in tail]
            continue
        pairs = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        dels, inss = [], []
        for k in range(pairs):
            d, i = _word_diff(old[i1 + k], new[j1 + k])
            dels.append(d)
            inss.append(i)
        dels += [Markup("<del>{}</del>").format(line) for line in old[i1 + pairs:i2]]
        inss += [Markup("<ins>{}</ins>").format(line) for line in new[j1 + pairs:j2]]
        rows += [{"op": "del", "html": h} for h in dels] + [{"op": "ins", "html": h} for h in inss]
    return rows


def _word_diff(a: str, b: str) -> tuple[Markup, Markup]:
    wa, wb = re.findall(r"\s+|\w+|[^\w\s]", a), re.findall(r"\s+|\w+|[^\w\s]", b)
    left, right = Markup(""), Markup("")
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        old, new = "".join(wa[i1:i2]), "".join(wb[j1:j2])
        if tag == "equal":
            left += escape(old)
            right += escape(new)
            continue
        if old:
            left += Markup("<del>{}</del>").format(old)
        if new:
            right += Markup("<ins>{}</ins>").format(new)
    return left, right


# ---------------------------------------------------------------------- Dify forms (Human Input node)
# Dify marks where an input goes in the form's markdown with {{#$output.NAME#}}.
FORM_MARKER = re.compile(r"\{\{#\$output\.([A-Za-z_][A-Za-z0-9_]{0,63})#\}\}")
_SLOT = re.compile("\ue000(\\d+)\ue001")
_BLOCK_SLOT = re.compile("<p>\ue000(\\d+)\ue001</p>")


FORM_INPUT_TYPES = ("paragraph", "text_input", "select", "file", "file-list")


def _options(item: dict[str, Any]) -> list[str]:
    source = item.get("option_source")
    values = source.get("value") if isinstance(source, dict) else item.get("options")
    return [str(v) for v in values] if isinstance(values, list) else []


def form_inputs(form: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The form's inputs as the page shows them: name, type (paragraph | text_input | select | file |
    file-list, or `unsupported` with Dify's own type name in `dify_type`), default value, options."""
    form = form or {}
    defaults = form.get("resolved_default_values") or {}
    shown = []
    for item in form.get("inputs") or []:
        if not isinstance(item, dict) or not item.get("output_variable_name"):
            continue
        name = str(item["output_variable_name"])
        default = defaults.get(name)
        if default is None and isinstance(item.get("default"), dict) and item["default"].get("type") == "constant":
            default = item["default"].get("value")
        dify_type = str(item.get("type") or "text_input")
        kind = dify_type if dify_type in FORM_INPUT_TYPES else "unsupported"
        if kind in ("file", "file-list"):
            default = file_urls(default)
        shown.append({"name": name, "type": kind, "dify_type": dify_type, "options": _options(item),
                      "required": kind in ("select", "file", "file-list"),
                      "default": "" if default is None else default if isinstance(default, str)
                      else json.dumps(default)})
    return shown


def file_urls(value: Any) -> str:
    """A file input's value as the URLs a reviewer can read and edit, one a line (an uploaded file has none)."""
    files = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    urls = [str(f.get("url") or f.get("remote_url") or "") for f in files if isinstance(f, dict)]
    return "\n".join(u for u in urls if u) if urls else ("" if value is None else str(value))


def _field(item: dict[str, Any] | None, name: str, value: Any, block: bool) -> Markup:
    if item is None:  # a marker without an input: show where it was, escaped
        return Markup('<code class="ff-unknown">{}</code>').format(name)
    if item["type"] in ("file", "file-list"):
        text = file_urls(value) or ("" if value in (None, "", []) else "[file]")
    else:
        text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
    tag = "div" if block else "span"
    return Markup('<{tag} class="ff ff-{type}" data-field="{name}"><span class="ff-label">{name}</span>'
                  '<span class="ff-value{empty}" data-form-preview="{name}">{text}</span></{tag}>').format(
        tag=Markup(tag), type=item["type"], name=name, text=text, empty=Markup("") if text else Markup(" ff-empty"))


def form_html(form: dict[str, Any] | None, values: dict[str, Any] | None = None) -> Markup:
    """The form's markdown rendered safely, each input marker replaced by that input's field (showing
    `values`, else its default). Inputs without a marker are added at the end, as Dify's UI does."""
    form = form or {}
    inputs = {i["name"]: i for i in form_inputs(form)}
    values = {**{n: i["default"] for n, i in inputs.items()}, **(values or {})}
    source = str(form.get("form_content") or "").replace("\ue000", "").replace("\ue001", "")
    slots: list[str] = []

    def slot(m: re.Match) -> str:
        slots.append(m.group(1))
        return f"\ue000{len(slots) - 1}\ue001"

    html = str(markdown(FORM_MARKER.sub(slot, source)))
    html = _BLOCK_SLOT.sub(lambda m: str(_field(inputs.get(slots[int(m.group(1))]), slots[int(m.group(1))],
                                                values.get(slots[int(m.group(1))]), True)), html)
    html = _SLOT.sub(lambda m: str(_field(inputs.get(slots[int(m.group(1))]), slots[int(m.group(1))],
                                          values.get(slots[int(m.group(1))]), False)), html)
    rest = [n for n in inputs if n not in slots]
    if rest:
        fields = "".join(str(_field(inputs[n], n, values.get(n), True)) for n in rest)
        html = html.removesuffix("</div>") + fields + "</div>"
    return Markup(html)


# user action id → the decision it is: approve-like ids approve, revise revises, abort/reject/… abort;
# any other id approves with that action (the form's own branch).
ABORT_WORDS = ABORT_ACTION_IDS  # the one abort vocabulary (shared/models.py), as the decider maps them
REVISE_WORDS = ("revise", "revision")


def form_action_kind(action_id: str) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", action_id.lower()) if w]
    first = words[0] if words else ""
    if first in ABORT_WORDS or action_id.lower() in ABORT_WORDS:
        return "abort"
    if first in REVISE_WORDS or (first == "request" and any(w in REVISE_WORDS for w in words)):
        return "revise"
    return "approve"


BUTTON_COLOR = {"primary": "blue", "accent": "blue", "default": "plain", "ghost": "ghost", "secondary": "plain"}
