"""Offline tokenizers for tiny pipelines: a word-level BPE CLIP tokenizer and a unigram T5 tokenizer."""

from transformers import CLIPTokenizer, T5TokenizerFast

CLIP_SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def clip_tokenizer(words: list[str], max_length: int = 77) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose merges spell each of `words` as one token (unknown words fall to letters)."""
    letters = sorted({c for c in "abcdefghijklmnopqrstuvwxyz0123456789"} | {c for w in words for c in w})
    vocab: dict[str, int] = {}
    for token in [*letters, *(f"{c}</w>" for c in letters)]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words)):
        pieces = [*word[:-1], f"{word[-1]}</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if (pieces[0], pieces[1]) not in merges:
                merges.append((pieces[0], pieces[1]))
            vocab.setdefault(merged, len(vocab))
            pieces = [merged, *pieces[2:]]
    for token in CLIP_SPECIAL:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def t5_tokenizer(words: list[str], max_length: int = 32) -> T5TokenizerFast:
    """A T5 unigram tokenizer in which each of `words` is one piece (letters cover anything else)."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"▁{word}", -1.0) for word in sorted(set(words))]
    pieces += [(c, -10.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + [("▁", -5.0)]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=max_length)
