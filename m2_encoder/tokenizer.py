"""Bilingual SentencePiece tokenisation in the layout of M2-Encoder's GLM tokenizer (spec section 4).

The released model uses GLM-10B-Chinese's SentencePiece model (``vlmo/tokenizer/sp.model``) through
``GLMChineseTokenizer``: the special tokens follow the pieces (``<|endoftext|>`` = 50000, ``[SEP]`` = 50001,
``[CLS]`` = 50002, ``[MASK]`` = 50003 for its 50,000 pieces), runs of 2-10 spaces become ``<|blank_n|>``, and
a text is ``[CLS] + pieces + <|endoftext|>``, truncated on the left to ``max_text_len`` (52) and padded with
``<|endoftext|>``. Evaluation lower-cases and straightens curly quotes.

:class:`BilingualTokenizer` does the same for any SentencePiece model: by default the special ids are placed
right after the pieces in GLM's order (so GLM's model gives GLM's ids), or set explicitly. Toy runs train a
small model on the toy English and Chinese captions with :func:`train_sentencepiece`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

BLANK_RE = re.compile(r" {2,10}")
BLANK_SYMBOLS = [f"<|blank_{n}|>" for n in range(2, 11)]


def preprocess_text(text: str) -> str:
    """The released evaluation's normalisation: lower-case, curly double quotes to straight ones."""
    return text.lower().replace("\u201c", '"').replace("\u201d", '"')


def encode_blanks(text: str) -> str:
    """GLM's blank handling: a run of 2-10 spaces becomes ``<|blank_n|>``."""
    return BLANK_RE.sub(lambda m: f"<|blank_{len(m.group(0))}|>", text)


class BilingualTokenizer:
    """SentencePiece tokenizer with GLM's special tokens, sequence layout and left truncation.

    Args:
        model_file: path of the SentencePiece ``.model``.
        max_text_len: sequence length including ``[CLS]`` and ``<|endoftext|>`` (52 in the paper).
        eos_id: ``<|endoftext|>`` (also padding); None: the number of pieces (50000 for GLM).
        cls_id: ``[CLS]``; None: ``eos_id + 2``.
        mask_id: ``[MASK]`` for CMLM; None: ``eos_id + 3``.
        lowercase: apply :func:`preprocess_text` first.

    Raises:
        FileNotFoundError: when ``model_file`` does not exist.
    """

    def __init__(
        self,
        model_file: str | Path,
        max_text_len: int = 52,
        eos_id: int | None = None,
        cls_id: int | None = None,
        mask_id: int | None = None,
        lowercase: bool = True,
    ) -> None:
        import sentencepiece as spm

        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"SentencePiece model not found at {path.resolve()}. For the paper recipe copy "
                "GLM-10B-Chinese's sp.model (alipay/Ant-Multi-Modal-Framework "
                "prj/M2_Encoder/vlmo/tokenizer/sp.model) there; toy runs train one in prepare_data."
            )
        if max_text_len < 3:
            raise ValueError(f"max_text_len must be >= 3, got {max_text_len}")
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.num_pieces = self.sp.get_piece_size()
        self.eos_id = self.num_pieces if eos_id is None else eos_id
        self.pad_id = self.eos_id
        self.cls_id = self.eos_id + 2 if cls_id is None else cls_id
        self.mask_id = self.eos_id + 3 if mask_id is None else mask_id
        self.max_text_len = max_text_len
        self.lowercase = lowercase

    @property
    def vocab_size(self) -> int:
        """Smallest embedding table that holds every id this tokenizer emits."""
        return max(self.num_pieces, self.eos_id, self.cls_id, self.mask_id) + 1

    def pieces(self, text: str) -> list[int]:
        if self.lowercase:
            text = preprocess_text(text)
        return list(self.sp.encode(encode_blanks(text)))

    def encode(self, text: str) -> tuple[list[int], list[bool]]:
        """``[CLS] + pieces + <|endoftext|>`` (left-truncated) and a word-start flag per token.

        Word starts (for whole-word masking): a piece that opens with ``▁``, or any piece holding a CJK
        character (Chinese has no spaces, so each such piece is its own word); the specials are not words.
        """
        ids = self.pieces(text)
        keep = self.max_text_len - 2
        if len(ids) > keep:
            ids = ids[len(ids) - keep :]  # truncation side: left
        starts = [self._starts_word(i) for i in ids]
        return [self.cls_id, *ids, self.eos_id], [False, *starts, False]

    def _starts_word(self, piece_id: int) -> bool:
        piece = self.sp.id_to_piece(piece_id)
        return piece.startswith("\u2581") or any("\u4e00" <= ch <= "\u9fff" for ch in piece)

    def __call__(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Batch of texts -> ``text_ids``, ``text_masks`` (1 = token) and ``text_word_starts``, all (B, L)."""
        n, length = len(texts), self.max_text_len
        ids = torch.full((n, length), self.pad_id, dtype=torch.long)
        masks = torch.zeros((n, length), dtype=torch.long)
        starts = torch.zeros((n, length), dtype=torch.bool)
        for row, text in enumerate(texts):
            tok, st = self.encode(text)
            ids[row, : len(tok)] = torch.tensor(tok)
            masks[row, : len(tok)] = 1
            starts[row, : len(tok)] = torch.tensor(st)
        return {"text_ids": ids, "text_masks": masks, "text_word_starts": starts}


def train_sentencepiece(texts: Iterable[str], model_prefix: str | Path, vocab_size: int = 1000) -> Path:
    """Train a small unigram SentencePiece model on ``texts`` (toy captions); returns the ``.model`` path.

    The vocabulary is a soft limit (the toy corpus may hold fewer pieces); the blank symbols are reserved.
    """
    import io

    import sentencepiece as spm

    corpus = [encode_blanks(preprocess_text(t)) for t in texts]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        model_type="unigram",
        max_sentencepiece_length=6,
        user_defined_symbols=BLANK_SYMBOLS,
        bos_id=-1,
        eos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    path = Path(f"{model_prefix}.model")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".model.tmp")
    tmp.write_bytes(model.getvalue())
    tmp.replace(path)
    return path
