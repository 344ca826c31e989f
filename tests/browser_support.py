"""What the browser tests check on a page: axe-core's serious and critical violations (axe-core
run offline from axe-playwright-python's bundled script) and sideways overflow at a width."""

# Elements that stick out past the viewport's right edge, outside any box that scrolls or clips
# sideways on its own (the stock changelist's table scrolls inside `.results`: that is fine).
# Each as "tag#id.class (right edge px)", widest first.
OVERFLOWING_JS = """() => {
  const width = document.documentElement.clientWidth;
  const clipped = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const x = getComputedStyle(p).overflowX;
      if (x === 'auto' || x === 'scroll' || x === 'hidden' || x === 'clip') return true;
    }
    return false;
  };
  const found = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.right <= width + 1 || clipped(el)) continue;
    const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
      + (typeof el.className === 'string' && el.className.trim()
         ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
    found.push([box.right, `${name} (${Math.round(box.right)} px)`]);
  }
  found.sort((a, b) => b[0] - a[0]);
  return found.slice(0, 5).map((f) => f[1]);
}"""


def serious_violations(page, context: str | None = None, *, rules=()) -> list[str]:
    """axe-core's serious and critical violations on `page` (within the CSS selector `context`,
    else the whole page), as "rule (impact): [targets]"; `rules`: experimental rules to run as
    well."""
    from axe_playwright_python.sync_playwright import Axe

    options = {"rules": {rule: {"enabled": True} for rule in rules}} if rules else None
    results = Axe().run(page, context=context, options=options)
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def page_width(page) -> int:
    """How wide the page's document is, in CSS px (more than the viewport: it scrolls
    sideways)."""
    return page.evaluate("document.scrollingElement.scrollWidth")


def overflowing(page) -> list[str]:
    """Up to five elements past the viewport's right edge that no box of theirs scrolls or
    clips, widest first: what makes the page scroll sideways."""
    return page.evaluate(OVERFLOWING_JS)
