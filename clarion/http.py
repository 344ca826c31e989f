"""Django's HTTP handling under ASGI with fewer thread hops: the middleware chain and the view
run as one synchronous call on a kept thread.

Django's ASGIHandler builds the middleware chain in async mode: each middleware that can run
async does, and a `MiddlewareMixin` one then hands every hook (process_request, process_view,
process_response) to a thread of its own `sync_to_async` call; a sync-only middleware hands
the rest of the chain back to the event loop (`async_to_sync`). With this project's
middleware a sync view's request crossed between the event loop and a worker thread about ten
times, each crossing a wake-up of the other side and a wait for the GIL behind whatever
request holds it. And every request ran on a thread made for it (`ThreadSensitiveContext`
makes an executor per request), joined afterwards by another new thread.

`SyncChainASGIHandler` builds the chain in sync mode, as under WSGI, and runs it (middleware,
view, the response's middleware) in one `sync_to_async` call; what stays async is Django's
own: reading the body, the request_started signal, sending the response and closing it. Its
thread-sensitive calls run on one executor per request taken from a kept free list (a
thread that served a request serves the next), not on a new thread. Async views still work
(the sync chain runs them with `async_to_sync`, as under WSGI), and responses stream as
before.
"""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler


class SyncChainASGIHandler(ASGIHandler):
    """An ASGIHandler whose middleware chain is synchronous and runs on a kept thread (see the
    module docstring). `keep_threads`: how many idle threads it keeps for the next requests
    (more concurrent requests make more threads, which end when they become idle)."""

    def __init__(self, *, keep_threads: int = 64):
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.keep_threads = keep_threads
        self._idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # Last in, first out: the thread that served the latest request is warmest.
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="http")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            if len(self._idle) < self.keep_threads:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)

    async def get_response_async(self, request):
        """The response of the synchronous chain, run on this request's thread."""
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)

