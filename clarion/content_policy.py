"""Content-Security-Policy of the pages Clarion serves to people who are not its operators: the
hosted preference center and unsubscribe pages, and the inbox widget's demo page (django-csp's
middleware writes the header; each view chooses its policy with a decorator from here).

Nothing runs or loads on these pages unless the policy names it: no inline script or style
without the request's nonce, no plugin, no `<base>`, no framing, forms post only to Clarion.
Images may come from any https address (a tenant's logo) or be data: URLs. A payload that gets
into a page despite the escaping (an `onerror=` attribute, an inline `<script>`) is refused by
the browser, which reports a `securitypolicyviolation` event (tests/security/test_csp_browser.py).
"""

from csp.constants import NONCE, NONE, SELF
from csp.decorators import csp

_BASE = {
    "default-src": [NONE],
    "base-uri": [NONE],
    "object-src": [NONE],
    "frame-ancestors": [NONE],
    "form-action": [SELF],
    "img-src": [SELF, "https:", "data:"],
}

# The preference center and unsubscribe pages: one inline <style> (with the nonce), no script.
HOSTED_PAGE_POLICY = {**_BASE, "style-src": [NONCE]}

# The widget's demo page: the widget's script from our static files, the page's own inline
# script (nonce), the widget's styles (a constructed stylesheet) and its calls to the inbox API
# and websocket on this host ('self' covers ws:/wss: to the same host in CSP Level 3).
DEMO_PAGE_POLICY = {**_BASE, "script-src": [SELF, NONCE], "style-src": [SELF, NONCE],
                    "connect-src": [SELF]}

hosted_page = csp(HOSTED_PAGE_POLICY)
demo_page = csp(DEMO_PAGE_POLICY)
