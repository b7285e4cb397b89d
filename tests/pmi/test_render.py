"""antisd.pmi.render: the HTML traces are valid, escaped, and show every token."""

from __future__ import annotations

from html.parser import HTMLParser

from antisd.pmi import PMIRecord, compute_pmi, render_html, visible_whitespace

from .helpers import chat, make_rollouts


class _Spans(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[list[str]] = []
        self.open: list[str] = []
        self.in_tok = False
        self.titles: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("meta", "br", "hr", "img", "link", "input"):  # void elements have no end tag
            self.open.append(tag)
        if tag == "section":
            self.sections.append([])
        if tag == "span" and "tok" in (a.get("class") or "").split():
            self.in_tok = True
            self.sections[-1].append("")
            self.titles.append(a["title"])

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"unbalanced </{tag}>"
        self.open.pop()
        if tag == "span":
            self.in_tok = False

    def handle_data(self, data):
        if self.in_tok:
            self.sections[-1][-1] += data


def test_html_is_valid_and_contains_every_token(model_and_tok):
    model, tok = model_and_tok
    records = list(compute_pmi(model, tok, make_rollouts(tok), check_rollouts=0))
    tricky = PMIRecord("tricky <&>", [1, 2, 3, 4, 5], ["<b>", " & ", "\n", "\t\"x\"", "'"], [-1.0] * 5, [-2.0, 0.0, -1.0, -0.5, -1.0],
                       teacher_entropy=[0.1] * 5, prompt="a <script>", teacher_prompt=chat("x & y"))
    page = render_html([*records, tricky], scale=2.0)
    assert "<script>" not in page and "http" not in page  # escaped; no external assets
    p = _Spans()
    p.feed(page)
    p.close()
    assert p.open == []
    assert len(p.sections) == len(records) + 1
    for rec, texts in zip([*records, tricky], p.sections):
        assert texts == [visible_whitespace(t) for t in rec.tokens]
    assert visible_whitespace(" a\nb\t") == "\u00b7a\u21b5\nb\u2192"
    assert "u=-1.000" in p.titles[-5] and "H_T=0.100" in p.titles[-5]
