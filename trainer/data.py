"""Reading a preference dataset (Pick-a-Pic format) into winner/loser pairs the trainer can use."""

import hashlib
import io
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from trainer.images import ImageRejected, check_image
from trainer.pickapic import REQUIRED_COLUMNS


class DatasetError(ValueError):
    """A dataset the trainer cannot learn from; the message says why."""


@dataclass
class PreferencePair:
    caption: str
    winner: Image.Image
    loser: Image.Image
    guidance: float | None
    weight: float = 1.0  # how much the pair counts (the `weight` column: its annotators' trust)
    pair_key: str = ""  # the image pair this row judges (rows of one pair share it: overlap ≥ 2)


def load_pairs(path: Path) -> tuple[list[PreferencePair], int]:
    """Decisive pairs of the file (winner first) and how many ties were left out. `path` is a parquet file or a
    dataset folder as `export_preferences --out FOLDER/` writes it (its `data/train.parquet`)."""
    path = Path(path)
    if path.is_dir():
        path = path / "data" / "train.parquet"
    if not path.is_file():
        raise DatasetError(f"No dataset file at {path}.")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path} is not a readable parquet file ({str(exc).splitlines()[0]}).") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path} lacks column(s) {', '.join(missing)}: not a Pick-a-Pic preference file.")
    columns = [*REQUIRED_COLUMNS] + [c for c in ("guidance", "weight", "pair_id") if c in table.column_names]
    pairs, ties = [], 0
    for index, row in enumerate(table.select(columns).to_pylist()):
        label = row["label_0"]
        if label == 0.5:
            ties += 1
            continue
        if label not in (0, 1):
            raise DatasetError(f"Row {index}: label_0 is {label}; expected 0, 0.5 or 1.")
        images = []
        for column in ("jpg_0", "jpg_1"):
            try:
                check_image(row[column] or b"")
            except ImageRejected as exc:
                raise DatasetError(f"Row {index}: {column} {exc}.") from exc
            images.append(Image.open(io.BytesIO(row[column])).convert("RGB"))
        winner, loser = (images[0], images[1]) if label == 1 else (images[1], images[0])
        weight = 1.0 if row.get("weight") is None else row["weight"]
        if not weight >= 0:
            raise DatasetError(f"Row {index}: weight is {weight}; expected 0 or more.")
        pairs.append(PreferencePair(row["caption"], winner, loser, row.get("guidance"), float(weight),
                                     _pair_key(row)))
    if not pairs and ties:
        raise DatasetError(f"{path} holds only ties ({ties}): there is no preference to learn.")
    if not pairs:
        raise DatasetError(f"{path} holds no pairs.")
    if not any(p.weight > 0 for p in pairs):
        raise DatasetError(f"{path} gives every pair a weight of 0: there is nothing to learn from.")
    return pairs, ties


def _pair_key(row: dict) -> str:
    """The image pair a row judges: Chisel's `pair_id` where the file has it, else the two images' bytes."""
    if row.get("pair_id") is not None:
        return f"pair:{row['pair_id']}"
    digests = sorted(hashlib.sha256(row[column] or b"").hexdigest() for column in ("jpg_0", "jpg_1"))
    return "images:" + ":".join(digests)


MIN_PROMPT_GROUPS = 4  # fewer distinct captions than this: split by image pair instead


def split_heldout(pairs: list, fraction: float, seed: int) -> tuple[list, list]:
    """A fixed share of rows kept out of training to measure implicit accuracy on unseen data, split by prompt
    (caption) where there are enough prompts, else by image pair: at overlap ≥ 2 the judgements of one pair
    (and pairs of one prompt) never land on both sides, so the held-out loss is not optimistic."""
    held = heldout_indices(pairs, fraction, seed)
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def heldout_indices(pairs: list[PreferencePair], fraction: float, seed: int) -> set[int]:
    """The indices split_heldout holds out."""
    if fraction <= 0 or len(pairs) < 10:
        return set()
    by_caption = len({pair.caption for pair in pairs}) >= MIN_PROMPT_GROUPS
    groups: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        key = pair.caption if by_caption else (pair.pair_key or f"row:{index}")
        groups.setdefault(key, []).append(index)
    if len(groups) < 2:
        return set()
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    wanted, held = max(1, int(len(pairs) * fraction)), set()
    for key in keys[:-1]:  # at least one group stays for training
        if len(held) >= wanted:
            break
        held |= set(groups[key])
    return held
