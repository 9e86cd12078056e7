"""Caption tokenisation variants (`[pretrain]` / `[clean]` `truncation`).

open_clip's tokenizer truncates a caption longer than the context (77 tokens with start and end)
and puts the end-of-text token in the last slot ("eot"). The original code's
`Processor.process_text` (attack-cleanclip `pkgs/openai/clip.py:78-90`) keeps the first 77
tokens, so a long caption has no end-of-text token ("drop_eot"); the text tower then pools at
the largest token id of the caption instead (`argmax` over ids, as both models pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TRUNCATIONS = ("eot", "drop_eot")


@dataclass
class DropEotTokenizer:
    """An open_clip `SimpleTokenizer` truncating as the original code does."""

    base: object

    @property
    def context_length(self) -> int:
        return self.base.context_length

    def __call__(self, texts, context_length: int | None = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        length = context_length or self.base.context_length
        result = torch.zeros(len(texts), length, dtype=torch.long)
        for i, text in enumerate(texts):
            tokens = [self.base.sot_token_id] + self.base.encode(text) + [self.base.eot_token_id]
            tokens = tokens[:length]
            result[i, :len(tokens)] = torch.tensor(tokens)
        return result


def with_truncation(tokenizer, truncation: str):
    """`tokenizer` as `truncation` asks; a tokenizer without `encode` (not open_clip's simple
    BPE one) cannot drop the end token and is refused."""
    if truncation == "eot":
        return tokenizer
    if truncation != "drop_eot":
        raise ValueError(f"truncation: unknown value '{truncation}'; allowed: "
                         f"{', '.join(TRUNCATIONS)}")
    if not all(hasattr(tokenizer, a) for a in ("encode", "sot_token_id", "eot_token_id")):
        raise ValueError(f"truncation = 'drop_eot' needs open_clip's SimpleTokenizer; this "
                         f"model's is {type(tokenizer).__name__}")
    return DropEotTokenizer(tokenizer)
