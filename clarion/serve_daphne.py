"""daphne as `manage.py serve` runs it: `python -m clarion.serve_daphne <daphne's arguments>`.

The same as `python -m daphne`, without the warning daphne logs at every start when Twisted's
HTTP/2 extras are not installed ("HTTP/2 support not enabled"): daphne speaks HTTP/2 only over
TLS, which the embedded server does not serve, so the warning says nothing about this setup and
a newcomer reads it as a fault. Every other line of daphne's log is kept."""

import logging

from daphne.cli import CommandLineInterface


class WithoutHTTP2Notice(logging.Filter):
    """Drops daphne.server's "HTTP/2 support not enabled …" record; passes every other."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("HTTP/2 support not enabled")


if __name__ == "__main__":
    logging.getLogger("daphne.server").addFilter(WithoutHTTP2Notice())
    CommandLineInterface.entrypoint()
