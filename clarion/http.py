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

`SyncChainASGIHandler` builds the chain in sync mode, as under WSGI, and runs the request's
synchronous part in one `sync_to_async` call: the request_started signal, the request built
from the scope, the middleware chain and view, and for a response that is not streamed its
close (request_finished: the database connection back to the pool) before it is sent; a
streamed response is closed after it is sent, in a second call, as Django does. What stays
async is Django's own: reading the body, sending the response, listening for a disconnect
meanwhile. (Django's handler makes three thread calls a request: the signal's sync
receivers, the chain, the close.) Its thread-sensitive calls run on one executor per request
taken from a kept free list (a thread that served a request serves the next), not on a new
thread. Async views still work (the sync chain runs them with `async_to_sync`, as under
WSGI), and responses stream as before.

With `threads` set (CLARION_WEB_THREADS; default 0, no bound) at most that many requests run
that synchronous part at once; the others wait in the event loop, their bodies read, for a turn.
With a thread per request, 16 concurrent requests made 16 threads contending for the GIL: each
blocking call (a database or Redis round trip) handed it over, 45–65 context switches a request
(14–20 with two threads), and a request's CPU in the web process was 10–20 % higher; a
trigger's longer wait on its durable commit makes most of that (21 a trigger, unbounded, with
synchronous_commit off for a measurement). But with two processes the floor GET gained more
than the trigger, and with one process triggers/s moved within the noise (bench/README.md,
"the web process's threads", 2026-12-03), so it is off by default. Like a WSGI server's
fixed threads, a request that waits long (a slow view) keeps its turn meanwhile.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import FileResponse
from django.urls import set_script_prefix


def _release(turns: asyncio.Semaphore):
    """A done-callback for a thread call that holds one of `turns`: gives it back, and reads
    the call's outcome (its exception, if any, is the cancelled request's, logged by nobody)."""

    def release(call: asyncio.Future) -> None:
        turns.release()
        if not call.cancelled():
            call.exception()

    return release


class SyncChainASGIHandler(ASGIHandler):
    """An ASGIHandler whose middleware chain is synchronous and runs on a kept thread (see the
    module docstring). `threads`: how many requests run their synchronous part at once (0: no
    bound, each concurrent request on a thread of its own). `keep_threads`: how many idle
    threads it keeps for the next requests (more concurrent requests make more threads, which
    end when they become idle)."""

    def __init__(self, *, threads: int = 0, keep_threads: int = 64):
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.threads = threads
        self.keep_threads = keep_threads
        self._turns: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._idle: list[ThreadPoolExecutor] = []
        # Made once: sync_to_async's wrapper inspects and wraps its function at every call.
        self._respond = sync_to_async(self.respond, thread_sensitive=True)

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

    async def handle(self, scope, receive, send):
        """ASGIHandler.handle with its synchronous steps in one thread call (`respond`)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))

        async def process_request():
            turns = self._turns_of_this_loop()
            if turns is None:
                response, closed = await self._respond(scope, body_file)
            else:
                # The turn is given back when the call ends, not when this task does: a
                # client that disconnects cancels the task, but its view runs on to the end
                # on its thread, and keeps the turn meanwhile.
                await turns.acquire()
                call = asyncio.ensure_future(self._respond(scope, body_file))
                call.add_done_callback(_release(turns))
                response, closed = await asyncio.shield(call)
            # The client disconnected while the response was sent: nothing more to do.
            with suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response, closed

        # As Django's: a disconnect while the response is made cancels its sending.
        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)),
                 asyncio.create_task(process_request())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        try:
            response, closed = tasks[1].result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            if not closed:
                await sync_to_async(response.close)()
        body_file.close()

    def _turns_of_this_loop(self) -> asyncio.Semaphore | None:
        """The semaphore bounding the running loop's synchronous calls to `threads` (None: no
        bound); one per event loop, as a semaphore belongs to the loop it first waits in."""
        if not self.threads:
            return None
        loop = asyncio.get_running_loop()
        if self._turns is None or self._turns[0] is not loop:
            self._turns = (loop, asyncio.Semaphore(self.threads))
        return self._turns[1]

    def respond(self, scope, body_file):
        """On the request's thread: request_started, the request, the chain's response, and
        its close unless it streams. Returns (response, closed)."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        if response.streaming:
            return response, False
        response.close()
        return response, True
