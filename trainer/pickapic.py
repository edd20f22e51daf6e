"""The preference dataset format: Pick-a-Pic v2 columns, then Chisel's own, as one pyarrow schema.

Pick-a-Pic v2 (the data behind PickScore and Diffusion-DPO) stores one comparison per row: `caption`, the two
images' raw bytes (`jpg_0`, `jpg_1`, whatever their format), and `label_0`/`label_1` (1, 0, or 0.5 for a tie).
diffusers' Diffusion-DPO script reads only `caption, jpg_0, jpg_1, label_0` and counts any `label_0` other
than 0 as "image 0 wins", so ties are dropped on export unless asked for. `PICKAPIC_FIELDS` is v2's exact
schema, in its order, with the pandas index column its parquet files carry (`INDEX_COLUMN`).
"""

import pyarrow as pa

PICKAPIC_FIELDS = [
    pa.field("are_different", pa.bool_()),
    pa.field("best_image_uid", pa.string()),
    pa.field("caption", pa.string()),
    pa.field("created_at", pa.timestamp("ns")),  # v2's type: no timezone (Chisel writes UTC)
    pa.field("has_label", pa.bool_()),
    pa.field("image_0_uid", pa.string()),
    pa.field("image_0_url", pa.string()),
    pa.field("image_1_uid", pa.string()),
    pa.field("image_1_url", pa.string()),
    pa.field("jpg_0", pa.binary()),
    pa.field("jpg_1", pa.binary()),
    pa.field("label_0", pa.float64()),
    pa.field("label_1", pa.float64()),
    pa.field("model_0", pa.string()),
    pa.field("model_1", pa.string()),
    pa.field("ranking_id", pa.int64()),
    pa.field("user_id", pa.int64()),
    pa.field("num_example_per_prompt", pa.int64()),
    pa.field("__index_level_0__", pa.int64()),  # INDEX_COLUMN: v2's pandas index; Chisel writes the row's number
]
INDEX_COLUMN = "__index_level_0__"

CHISEL_FIELDS = [
    pa.field("taste", pa.string()),
    pa.field("round", pa.int64()),
    pa.field("pair_id", pa.int64()),
    pa.field("pair_kind", pa.string()),
    pa.field("seed_0", pa.int64()),
    pa.field("seed_1", pa.int64()),
    pa.field("params_0", pa.string()),  # JSON: every sampling parameter of image 0
    pa.field("params_1", pa.string()),
    pa.field("guidance", pa.float64()),  # the guidance both images were sampled with (the trainer feeds it)
    pa.field("flags_0", pa.list_(pa.string())),
    pa.field("flags_1", pa.list_(pa.string())),
    pa.field("choice", pa.string()),  # a, b, tie (or the majority's verdict)
    pa.field("annotator", pa.string()),
    pa.field("judgements", pa.int64()),  # judgements behind the row: 1, or the pair's count with --aggregate majority
    pa.field("duration_ms", pa.int64()),
    pa.field("shown_left", pa.int64()),  # 0 or 1: which image the annotator saw on the left
    pa.field("weight", pa.float64()),  # the annotators' trust (1.0 unless the round weights by trust), averaged
]

SCHEMA = pa.schema(PICKAPIC_FIELDS + CHISEL_FIELDS)
REQUIRED_COLUMNS = ("caption", "jpg_0", "jpg_1", "label_0")
LABELS = (0.0, 0.5, 1.0)


# The JSONL export's rows: the schema's columns without the image bytes, the images as file names beside the rows,
# and created_at as ISO text.
JSONL_SCHEMA = pa.schema(
    [field.with_type(pa.string()) if field.name == "created_at" else field
     for field in SCHEMA if field.name not in ("jpg_0", "jpg_1")]
    + [pa.field("image_0_file", pa.string()), pa.field("image_1_file", pa.string())]
)


def card_features(schema: pa.Schema) -> list[dict]:
    """The columns as a dataset card's `dataset_info.features` (the Hub's YAML), so that `datasets` reads every
    split with these types instead of guessing them file by file (a split whose rows all have empty flags would
    otherwise read as lists of nulls, and a later split with flags would fail to load)."""
    def dtype(kind: pa.DataType) -> str:
        if pa.types.is_boolean(kind):
            return "bool"
        return f"float{kind.bit_width}" if pa.types.is_floating(kind) else str(kind)

    return [{"name": field.name, "list": dtype(field.type.value_type)} if pa.types.is_list(field.type)
            else {"name": field.name, "dtype": dtype(field.type)} for field in schema]


def labels_for(choice: str) -> tuple[float, float]:
    """(label_0, label_1) for a verdict relative to images 0 (A) and 1 (B)."""
    return {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.5, 0.5)}[choice]
