"""Shipping a model: smaller and portable copies of any full Hugging Face causal-LM folder, and a
chat to read it before trusting a figure.

- `serving.folders`  — what a model folder is (causal LM? quantized?), its size on disk, atomic writes;
- `serving.quantize` — INT8 and 4-bit (NF4) weight-only copies through bitsandbytes;
- `serving.onnx`     — an ONNX graph with dynamic batch and sequence axes, checked with onnxruntime;
- `serving.quality`  — how far a copy is from the full model: mean KL per token on its own replies;
- `serving.chat`     — a streaming chat page (Gradio) and a terminal chat, one model or two side by side.

Each takes a full model folder (a merged export, `default`, or any local HF causal-LM folder) and
writes a new folder through a temporary sibling renamed at the end. Commands:
`python -m serving {quantize,onnx,chat} --help`; libraries: the `serving` extra of pyproject.toml.
"""
