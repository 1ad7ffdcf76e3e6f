"""Build the tokenizers of the chat-format tests: real chat templates of three model
families with a real tokenizer of each, from PyPI (never committed).

The llama-cpp-python sdist carries llama.cpp's ``models/`` folder: the published chat
templates of Llama 3.1 and Qwen2.5/Qwen3 (``templates/*.jinja``) and tokenizer-only
GGUFs (``ggml-vocab-*.gguf``: vocabulary and merges, no weights). Each pair is loaded
once (a GGUF tokenizer takes ~10 s) and saved as a plain tokenizer directory:

    python tests/agents/chat_templates.py .cache/chat-templates

Limits of the pairs: the Llama vocabulary is Llama 3's (3.1 only renamed reserved
tokens the template does not use), and the Qwen2 vocabulary lacks the single-token
``<tool_call>``/``<think>`` of later releases (they are spelled in several tokens).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "llama-cpp-python==0.3.36"
MODELS = "vendor/llama.cpp/models"
# name: (tokenizer GGUF, chat template)
PAIRS = {
    "llama3.1": ("ggml-vocab-llama-bpe.gguf", "templates/meta-llama-Llama-3.1-8B-Instruct.jinja"),
    "qwen2.5": ("ggml-vocab-qwen2.gguf", "templates/Qwen-Qwen2.5-7B-Instruct.jinja"),
    "qwen3": ("ggml-vocab-qwen2.gguf", "templates/Qwen-Qwen3-0.6B.jinja"),
}


def build(out: Path) -> None:
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
            + ["--no-binary", ":all:", "-d", tmp, SDIST],
            check=True,
        )
        (archive,) = Path(tmp).glob("*.tar.gz")
        wanted = {name for pair in PAIRS.values() for name in pair}
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                relative = member.name.split(f"/{MODELS}/", 1)[-1]
                if relative in wanted:
                    member.name = relative
                    tar.extract(member, tmp, filter="data")
        for name, (gguf, template) in PAIRS.items():
            tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf)
            tokenizer.chat_template = (Path(tmp) / template).read_text()
            tokenizer.save_pretrained(out / name)
    (out / "STAMP").write_text(SDIST + "\n")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
