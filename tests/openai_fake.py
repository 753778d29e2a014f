"""A fake OpenAI-compatible model server for the load tool to measure: one replica whose speed is known.

It answers `/v1/models` and streaming `/v1/completions` the way vLLM does (server-sent events,
`data: [DONE]`, a trailing usage chunk when `stream_options.include_usage` is set). One replica:
prompts are prefilled one at a time at PREFILL_TPS tokens/s (so past that rate requests queue and
the time to first token grows), then each stream emits one output token every 1/STREAM_TPS s.
A token is one whitespace-separated word, as in the word-level tokenizer `tokenizer_dir` writes,
so the load tool and this server count the same tokens.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PREFILL_TPS = 1500.0
STREAM_TPS = 100.0
VOCAB = 2000


# Run by the load tool's own Python (tokenizers and transformers come with inference-perf).
_TOKENIZER = """
import sys
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(int(sys.argv[2]))}}
tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(sys.argv[1])
"""


def tokenizer_dir(path: Path, python: Path) -> Path:
    """A word-level tokenizer (`w0` .. `w1999`, split on whitespace) saved where transformers'
    AutoTokenizer loads it offline, written by `python` (the load tool's interpreter)."""
    subprocess.run([str(python), "-c", _TOKENIZER, str(path), str(VOCAB)], check=True, capture_output=True, timeout=120)
    return path


class FakeReplica:
    """Serves on 127.0.0.1 in a thread until stop()."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._prefill = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeReplica":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        replica = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._json({"object": "list", "data": [{"id": replica.model, "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = len(str(body["prompt"]).split())
                output = int(body["max_tokens"])
                with replica._prefill:
                    time.sleep(prompt / PREFILL_TPS)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(output):
                    if i:
                        time.sleep(1 / STREAM_TPS)
                    self._event({"object": "text_completion", "model": replica.model,
                                 "choices": [{"index": 0, "text": f" w{i % VOCAB}", "finish_reason": None}]})
                if body.get("stream_options", {}).get("include_usage"):
                    self._event({"object": "text_completion", "model": replica.model, "choices": [],
                                 "usage": {"prompt_tokens": prompt, "completion_tokens": output,
                                           "total_tokens": prompt + output}})
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _event(self, data: dict[str, Any]) -> None:
                self._chunk(f"data: {json.dumps(data)}\n\n".encode())

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler
