"""A minimal OpenAI-compatible server on 127.0.0.1: streaming /v1/chat/completions with tools."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    """Replies ``echo: <text>``, calls ``get_weather`` for "call get_weather <city>", and reports
    a tool's result. Every request body is kept in ``requests``; ``delay``: each call waits that long."""

    def __init__(self, delay: float = 0.0) -> None:
        self.requests: list[dict] = []
        self.delay = delay  # seconds each call waits before its first chunk, as a provider does
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body})
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if fake.delay:
                    time.sleep(fake.delay)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for chunk in fake.chunks(body):
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()

    @staticmethod
    def chunks(body: dict):
        def chunk(delta, finish=None):
            return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        messages = body["messages"]
        last = messages[-1]
        said = last["content"] if isinstance(last["content"], str) else "".join(p.get("text", "") for p in last["content"])
        if last["role"] == "tool":
            text = f"The tool said: {said}"
        elif said.startswith("call get_weather "):
            city = said.split(" ", 2)[2]
            yield chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": json.dumps({"city": city})}}]})
            yield chunk({}, "tool_calls")
            text = None
        else:
            text = f"echo: {said} ({len(messages)} messages)"
        if text is not None:
            yield chunk({"role": "assistant", "content": ""})
            for i in range(0, len(text), 5):
                yield chunk({"content": text[i : i + 5]})
            yield chunk({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"], "choices": [],
                   "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
